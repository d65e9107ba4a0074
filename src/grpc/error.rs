//! The one boundary where failures become gRPC statuses: every code the
//! service answers with is chosen in [`code`].

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    app,
    domain::{Error, Reason},
};

/// `google.rpc.ErrorInfo.domain` of every error.
pub const ERROR_DOMAIN: &str = "attributes.vevee.dev";

/// The gRPC code of each reason (CONTRACT.md section 5).
pub fn code(reason: Reason) -> Code {
    match reason {
        Reason::AttributeNotDefined
        | Reason::AttributeValueInvalid
        | Reason::AttributeValueTooLong
        | Reason::InvalidDistinctId
        | Reason::InvalidAttributeDefinition
        | Reason::TooManyValues
        | Reason::InvalidArgument
        | Reason::AttributeOperationInvalid
        | Reason::RequestIdReused => Code::InvalidArgument,
        Reason::AttributeValueChanged | Reason::RequestInProgress => Code::Aborted,
        Reason::AttributeArchived | Reason::AttributeNotArchived => Code::FailedPrecondition,
        Reason::ClientAttributeWritesDisabled
        | Reason::SecretKeyRequired
        | Reason::AttributeNotClientWritable
        | Reason::IdentityVerificationFailed
        | Reason::OriginNotAllowed => Code::PermissionDenied,
        Reason::TooManyIdentitySecrets => Code::FailedPrecondition,
        Reason::IdentitySecretNotFound => Code::NotFound,
        Reason::MissingApiKey | Reason::InvalidApiKey => Code::Unauthenticated,
        Reason::PersonNotFound
        | Reason::AttributeDefinitionNotFound
        | Reason::OperationNotFound => Code::NotFound,
        Reason::AttributeAlreadyExists => Code::AlreadyExists,
        Reason::Unavailable => Code::Unavailable,
        Reason::RateLimited | Reason::RequestTooLarge => Code::ResourceExhausted,
    }
}

impl From<app::Error> for Status {
    fn from(err: app::Error) -> Self {
        match err {
            app::Error::Refused(error) => status(&error, ErrorDetails::new()),
            app::Error::Limited(error, retry_after) => {
                status(&error, ErrorDetails::with_retry_info(Some(retry_after)))
            }
            app::Error::Batch(failures) => {
                let mut details = ErrorDetails::new();
                for (field, error) in &failures {
                    details.add_bad_request_violation(
                        field.clone(),
                        format!("{}: {}", error.reason(), error.message()),
                    );
                }
                match failures.first() {
                    Some((_, first)) => status(first, details),
                    None => Status::internal("internal error"),
                }
            }
            app::Error::Internal(source) => {
                tracing::error!(error = %source, "internal error");
                Status::internal("internal error; it has been logged")
            }
        }
    }
}

/// The status of a refusal made outside the use cases (the request's size,
/// say), with its ErrorInfo like every other.
pub fn refusal(reason: Reason, message: impl Into<String>) -> Status {
    status(&Error::new(reason, message), ErrorDetails::new())
}

/// The status of `error`, with its ErrorInfo added to `details`.
fn status(error: &Error, mut details: ErrorDetails) -> Status {
    let mut metadata = HashMap::new();
    if let Some(attribute) = error.attribute() {
        metadata.insert("attribute".to_owned(), attribute.to_owned());
    }
    if let Some(etag) = error.current_etag() {
        metadata.insert("etag".to_owned(), etag.to_owned());
    }
    details.set_error_info(error.reason().as_str(), ERROR_DOMAIN, metadata);
    Status::with_error_details(code(error.reason()), error.message(), details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_maps_to_the_contract_code() {
        let expected = [
            (Reason::AttributeNotDefined, Code::InvalidArgument),
            (Reason::AttributeValueInvalid, Code::InvalidArgument),
            (Reason::AttributeValueTooLong, Code::InvalidArgument),
            (Reason::AttributeArchived, Code::FailedPrecondition),
            (
                Reason::ClientAttributeWritesDisabled,
                Code::PermissionDenied,
            ),
            (Reason::SecretKeyRequired, Code::PermissionDenied),
            (Reason::MissingApiKey, Code::Unauthenticated),
            (Reason::InvalidApiKey, Code::Unauthenticated),
            (Reason::InvalidDistinctId, Code::InvalidArgument),
            (Reason::PersonNotFound, Code::NotFound),
            (Reason::AttributeAlreadyExists, Code::AlreadyExists),
            (Reason::AttributeDefinitionNotFound, Code::NotFound),
            (Reason::InvalidAttributeDefinition, Code::InvalidArgument),
            (Reason::TooManyValues, Code::InvalidArgument),
            (Reason::Unavailable, Code::Unavailable),
            (Reason::InvalidArgument, Code::InvalidArgument),
            (Reason::AttributeOperationInvalid, Code::InvalidArgument),
            (Reason::AttributeValueChanged, Code::Aborted),
            (Reason::RequestIdReused, Code::InvalidArgument),
            (Reason::RequestInProgress, Code::Aborted),
            (Reason::AttributeNotClientWritable, Code::PermissionDenied),
            (Reason::RateLimited, Code::ResourceExhausted),
            (Reason::IdentityVerificationFailed, Code::PermissionDenied),
            (Reason::OriginNotAllowed, Code::PermissionDenied),
            (Reason::TooManyIdentitySecrets, Code::FailedPrecondition),
            (Reason::IdentitySecretNotFound, Code::NotFound),
            (Reason::RequestTooLarge, Code::ResourceExhausted),
            (Reason::AttributeNotArchived, Code::FailedPrecondition),
            (Reason::OperationNotFound, Code::NotFound),
        ];
        assert_eq!(expected.len(), Reason::ALL.len());
        for (reason, want) in expected {
            assert_eq!(code(reason), want, "{reason}");
        }
    }

    #[test]
    fn a_refusal_carries_error_info_with_the_attribute() {
        let status: Status =
            app::Error::from(Error::invalid_value("no").with_attribute("persona")).into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "attribute_value_invalid");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(
            info.metadata.get("attribute").map(String::as_str),
            Some("persona")
        );
    }

    #[test]
    fn a_batch_lists_every_failure_and_takes_the_first_ones_code() {
        let status: Status = app::Error::Batch(vec![
            (
                "values.a".into(),
                Error::new(Reason::AttributeArchived, "archived").with_attribute("a"),
            ),
            (
                "values.b".into(),
                Error::invalid_value("bad").with_attribute("b"),
            ),
        ])
        .into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let violations = status
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations;
        assert_eq!(violations.len(), 2);
        assert_eq!(violations[1].field, "values.b");
        assert!(
            violations[1]
                .description
                .starts_with("attribute_value_invalid")
        );
    }
}
