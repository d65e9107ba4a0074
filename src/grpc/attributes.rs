//! `AttributesService`: set, read and clear the attribute values of persons,
//! erase a person and list persons.

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use super::{auth::principal, convert};
use crate::{
    app::{App, WriteOptions},
    domain::{Etag, PersonId},
    proto::v1::{self as pb, attributes_service_server::AttributesService},
};

/// The AttributesService handlers.
#[derive(Clone)]
pub struct Attributes {
    app: App,
}

impl Attributes {
    /// Handlers over `app`.
    pub fn new(app: App) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl AttributesService for Attributes {
    async fn set_attribute(
        &self,
        request: Request<pb::SetAttributeRequest>,
    ) -> Result<Response<pb::SetAttributeResponse>, Status> {
        let who = principal(&request)?;
        let request = request.into_inner();
        let written = self
            .app
            .set_value(
                who,
                &request.distinct_id,
                &request.attribute,
                request.value.as_ref(),
                WriteOptions {
                    validate_only: request.validate_only,
                    request_id: &request.request_id,
                },
            )
            .await?;
        Ok(Response::new(pb::SetAttributeResponse {
            person_id: person_id(written.person_id),
            attribute: written.value.attribute.to_string(),
            value: Some(convert::json_to_value(&written.value.value)),
            etag: etag(written.value.etag),
            adjustments: convert::adjustments(&written.value.adjustments),
        }))
    }

    async fn set_attributes(
        &self,
        request: Request<pb::SetAttributesRequest>,
    ) -> Result<Response<pb::SetAttributesResponse>, Status> {
        let who = principal(&request)?;
        let request = request.into_inner();
        let written = self
            .app
            .set_values(
                who,
                &request.distinct_id,
                request.values.into_iter().collect(),
                WriteOptions {
                    validate_only: request.validate_only,
                    request_id: &request.request_id,
                },
            )
            .await?;
        Ok(Response::new(pb::SetAttributesResponse {
            person_id: person_id(written.person_id),
            values: written
                .values
                .iter()
                .map(|v| (v.attribute.to_string(), convert::json_to_value(&v.value)))
                .collect(),
            etags: written
                .values
                .iter()
                .filter_map(|v| Some((v.attribute.to_string(), v.etag?.to_string())))
                .collect(),
            adjustments: written
                .values
                .iter()
                .map(|v| {
                    let list = pb::Adjustments {
                        adjustments: convert::adjustments(&v.adjustments),
                    };
                    (v.attribute.to_string(), list)
                })
                .collect(),
        }))
    }

    async fn update_attributes(
        &self,
        request: Request<pb::UpdateAttributesRequest>,
    ) -> Result<Response<pb::UpdateAttributesResponse>, Status> {
        let who = principal(&request)?;
        let request = request.into_inner();
        let updates = convert::updates(request.updates)?;
        let updated = self
            .app
            .update_values(
                who,
                &request.distinct_id,
                updates,
                WriteOptions {
                    validate_only: request.validate_only,
                    request_id: &request.request_id,
                },
            )
            .await?;
        Ok(Response::new(pb::UpdateAttributesResponse {
            person_id: person_id(updated.person_id),
            results: updated
                .results
                .into_iter()
                .map(|r| pb::AttributeUpdateResult {
                    attribute: r.attribute.to_string(),
                    value: r.value.as_ref().map(convert::json_to_value),
                    applied: r.applied,
                    etag: etag(r.etag),
                    adjustments: convert::adjustments(&r.adjustments),
                })
                .collect(),
        }))
    }

    async fn get_attributes(
        &self,
        request: Request<pb::GetAttributesRequest>,
    ) -> Result<Response<pb::GetAttributesResponse>, Status> {
        let who = principal(&request)?;
        let request = request.into_inner();
        let person = self
            .app
            .get_values(
                who,
                &request.distinct_id,
                &request.attributes,
                request.include_archived,
            )
            .await?;
        Ok(Response::new(pb::GetAttributesResponse {
            person_id: person.person_id.to_string(),
            attributes: attribute_values(person.values),
        }))
    }

    async fn clear_attribute(
        &self,
        request: Request<pb::ClearAttributeRequest>,
    ) -> Result<Response<pb::ClearAttributeResponse>, Status> {
        let who = principal(&request)?;
        let request = request.into_inner();
        let cleared = self
            .app
            .clear_value(
                who,
                &request.distinct_id,
                &request.attribute,
                WriteOptions {
                    validate_only: request.validate_only,
                    request_id: &request.request_id,
                },
            )
            .await?;
        Ok(Response::new(pb::ClearAttributeResponse {
            person_id: cleared.person_id.to_string(),
            attribute: cleared.attribute.to_string(),
            cleared: cleared.cleared,
        }))
    }

    async fn delete_person(
        &self,
        request: Request<pb::DeletePersonRequest>,
    ) -> Result<Response<pb::DeletePersonResponse>, Status> {
        let who = principal(&request)?;
        let request = request.into_inner();
        let deleted = self.app.delete_person(who, &request.distinct_id).await?;
        Ok(Response::new(pb::DeletePersonResponse { deleted }))
    }

    async fn list_persons(
        &self,
        request: Request<pb::ListPersonsRequest>,
    ) -> Result<Response<pb::ListPersonsResponse>, Status> {
        let who = principal(&request)?;
        let request = request.into_inner();
        let page = self
            .app
            .list_persons(
                who,
                request.page_size,
                &request.page_token,
                &request.attributes,
                request.include_archived,
            )
            .await?;
        Ok(Response::new(pb::ListPersonsResponse {
            persons: page
                .persons
                .into_iter()
                .map(|p| pb::Person {
                    distinct_id: p.distinct_id,
                    person_id: p.person_id.to_string(),
                    attributes: attribute_values(p.values),
                })
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }
}

/// Stored values as responses carry them.
fn attribute_values(
    values: Vec<(String, serde_json::Value, DateTime<Utc>, Etag)>,
) -> Vec<pb::AttributeValue> {
    values
        .into_iter()
        .map(|(attribute, value, updated_at, tag)| pb::AttributeValue {
            attribute,
            value: Some(convert::json_to_value(&value)),
            updated_at: Some(convert::timestamp(updated_at)),
            etag: tag.to_string(),
        })
        .collect()
}

/// A person_id as responses carry it: empty when there is no person (a dry
/// run of a person that does not exist yet).
fn person_id(id: Option<PersonId>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

/// An etag as responses carry it: empty when there is none.
fn etag(etag: Option<Etag>) -> String {
    etag.map(|e| e.to_string()).unwrap_or_default()
}
