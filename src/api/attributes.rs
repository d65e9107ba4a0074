//! `AttributesService`: set, read and clear the attribute values of persons.

use std::{collections::HashMap, sync::Arc};

use tonic::{Request, Response, Status};

use super::{ApiError, convert};
use crate::{
    auth::{Principal, principal},
    cache::Catalog,
    domain::{AttributeDefinition, AttributeKey, DistinctId, Error, Reason, StoredValue},
    proto::v1::{self as pb, attributes_service_server::AttributesService},
};

/// Most values one SetAttributes may carry (CONTRACT.md section 2).
pub const MAX_VALUES_PER_BATCH: usize = 100;

/// The AttributesService handlers.
#[derive(Clone)]
pub struct Attributes {
    catalog: Catalog,
}

impl Attributes {
    /// Handlers reading definitions through `catalog`.
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }

    /// The definition of a key named in a request: `attribute_not_defined`
    /// when the key is malformed or not declared in the caller's workspace.
    async fn declared(
        &self,
        who: Principal,
        key: &str,
    ) -> Result<Arc<AttributeDefinition>, ApiError> {
        let key = AttributeKey::parse_reference(key)?;
        self.catalog
            .definition(who.workspace, &key)
            .await?
            .ok_or_else(|| not_defined(&key).into())
    }

    /// Coerces one value for a write.
    async fn coerce(
        &self,
        who: Principal,
        key: &str,
        value: Option<&prost_types::Value>,
    ) -> Result<(AttributeKey, StoredValue), ApiError> {
        let definition = self.declared(who, key).await?;
        let stored = definition.coerce(value)?;
        Ok((definition.key().clone(), stored))
    }
}

fn not_defined(key: &AttributeKey) -> Error {
    Error::new(
        Reason::AttributeNotDefined,
        format!(
            "The attribute \"{key}\" is not declared in this workspace; declare it with \
             CreateAttributeDefinition first."
        ),
    )
    .with_attribute(key.as_str())
}

fn person_not_found(distinct_id: &DistinctId) -> Error {
    Error::new(
        Reason::PersonNotFound,
        format!("No person has the distinct_id {distinct_id:?} in this workspace and mode."),
    )
}

#[tonic::async_trait]
impl AttributesService for Attributes {
    async fn set_attribute(
        &self,
        request: Request<pb::SetAttributeRequest>,
    ) -> Result<Response<pb::SetAttributeResponse>, Status> {
        let who = principal(&request)?;
        let request = request.into_inner();
        let distinct_id = DistinctId::parse(&request.distinct_id).map_err(ApiError::from)?;
        let (key, stored) = self
            .coerce(who, &request.attribute, request.value.as_ref())
            .await?;
        let person = self
            .catalog
            .store()
            .write_values(
                who.workspace,
                who.mode,
                distinct_id.as_str(),
                &[(key.to_string(), stored.to_json())],
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SetAttributeResponse {
            person_id: person.to_string(),
            attribute: key.to_string(),
            value: Some(stored.to_proto_value()),
        }))
    }

    async fn set_attributes(
        &self,
        request: Request<pb::SetAttributesRequest>,
    ) -> Result<Response<pb::SetAttributesResponse>, Status> {
        let who = principal(&request)?;
        let request = request.into_inner();
        let count = request.values.len();
        if count == 0 || count > MAX_VALUES_PER_BATCH {
            return Err(ApiError::from(Error::new(
                Reason::TooManyValues,
                format!(
                    "SetAttributes takes 1 to {MAX_VALUES_PER_BATCH} values and got {count}; \
                     split larger writes into several calls."
                ),
            ))
            .into());
        }
        let distinct_id = DistinctId::parse(&request.distinct_id).map_err(ApiError::from)?;
        // Key order makes "the first failure" well defined.
        let mut entries: Vec<_> = request.values.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut stored = Vec::with_capacity(entries.len());
        let mut failures = Vec::new();
        for (key, value) in &entries {
            match self.coerce(who, key, Some(value)).await {
                Ok(ok) => stored.push(ok),
                Err(ApiError::Refused(error)) => {
                    failures.push((key.clone(), error.with_attribute(key.clone())));
                }
                Err(other) => return Err(other.into()),
            }
        }
        if !failures.is_empty() {
            return Err(ApiError::Batch(failures).into());
        }
        let rows: Vec<_> = stored
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_json()))
            .collect();
        let person = self
            .catalog
            .store()
            .write_values(who.workspace, who.mode, distinct_id.as_str(), &rows)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SetAttributesResponse {
            person_id: person.to_string(),
            values: stored
                .into_iter()
                .map(|(key, value)| (key.to_string(), value.to_proto_value()))
                .collect::<HashMap<_, _>>(),
        }))
    }

    async fn get_attributes(
        &self,
        request: Request<pb::GetAttributesRequest>,
    ) -> Result<Response<pb::GetAttributesResponse>, Status> {
        let who = principal(&request)?;
        let request = request.into_inner();
        let distinct_id = DistinctId::parse(&request.distinct_id).map_err(ApiError::from)?;
        let mut filter = Vec::with_capacity(request.attributes.len());
        for key in &request.attributes {
            filter.push(self.declared(who, key).await?.key().to_string());
        }
        let keys = (!filter.is_empty()).then_some(filter.as_slice());
        let person = self
            .catalog
            .store()
            .read_values(
                who.workspace,
                who.mode,
                distinct_id.as_str(),
                keys,
                request.include_archived,
            )
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::from(person_not_found(&distinct_id)))?;
        Ok(Response::new(pb::GetAttributesResponse {
            person_id: person.person_id.to_string(),
            attributes: person
                .values
                .into_iter()
                .map(|v| pb::AttributeValue {
                    attribute: v.key,
                    value: Some(convert::json_to_value(&v.value)),
                    updated_at: Some(convert::timestamp(v.updated_at)),
                })
                .collect(),
        }))
    }

    async fn clear_attribute(
        &self,
        request: Request<pb::ClearAttributeRequest>,
    ) -> Result<Response<pb::ClearAttributeResponse>, Status> {
        let who = principal(&request)?;
        let request = request.into_inner();
        let distinct_id = DistinctId::parse(&request.distinct_id).map_err(ApiError::from)?;
        // Archived attributes can be cleared: data can always be removed.
        let key = self.declared(who, &request.attribute).await?.key().clone();
        let cleared = self
            .catalog
            .store()
            .clear_value(who.workspace, who.mode, distinct_id.as_str(), key.as_str())
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::from(person_not_found(&distinct_id)))?;
        Ok(Response::new(pb::ClearAttributeResponse {
            person_id: cleared.person_id.to_string(),
            attribute: key.to_string(),
            cleared: cleared.cleared,
        }))
    }
}
