//! gRPC statuses as REST answers: grpc-gateway's HTTP status of each code
//! and its error body, `{"code", "message", "details": [...]}`, with each
//! detail written through the JSON mapping under its `@type`.

use http::StatusCode;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};
use tonic::Code;

use super::json;

/// The HTTP status grpc-gateway v2 (`runtime.HTTPStatusFromCode`) and
/// Envoy's transcoder give each gRPC code.
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // nginx's "client closed request", as grpc-gateway answers.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error body of `status`. `rpc_status` is `google.rpc.Status` of a
/// pool that also holds every detail type the service sends, so that each
/// `Any` is written with its fields.
pub(crate) fn error_body(rpc_status: &MessageDescriptor, status: &tonic::Status) -> Vec<u8> {
    let mut body = DynamicMessage::new(rpc_status.clone());
    if !status.details().is_empty()
        && let Ok(decoded) = DynamicMessage::decode(rpc_status.clone(), status.details())
    {
        body = decoded;
    }
    // The status line is authoritative; the details' copy may be absent.
    body.set_field_by_name("code", Value::I32(status.code() as i32));
    body.set_field_by_name("message", Value::String(status.message().to_owned()));
    json::to_json(&body)
        .or_else(|_| {
            // A detail whose type the pool lacks cannot be written; the
            // code and message still are.
            body.clear_field_by_name("details");
            json::to_json(&body)
        })
        .unwrap_or_else(|_| {
            format!(
                r#"{{"code":{},"message":"","details":[]}}"#,
                status.code() as i32
            )
            .into_bytes()
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;

    fn rpc_status() -> MessageDescriptor {
        super::super::Descriptors::load().unwrap().rpc_status
    }

    #[test]
    fn the_body_carries_code_message_and_typed_details() {
        let mut details = ErrorDetails::with_error_info(
            "attribute_value_invalid",
            "attributes.vevee.dev",
            HashMap::from([("attribute".to_owned(), "persona".to_owned())]),
        );
        details.add_bad_request_violation("values.persona", "attribute_value_invalid: no");
        let status = tonic::Status::with_error_details(Code::InvalidArgument, "bad", details);
        let body: serde_json::Value =
            serde_json::from_slice(&error_body(&rpc_status(), &status)).unwrap();
        assert_eq!(body["code"], 3);
        assert_eq!(body["message"], "bad");
        let details = body["details"].as_array().unwrap();
        let info = details
            .iter()
            .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
            .unwrap();
        assert_eq!(info["reason"], "attribute_value_invalid");
        assert_eq!(info["metadata"]["attribute"], "persona");
        let bad = details
            .iter()
            .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
            .unwrap();
        assert_eq!(bad["fieldViolations"][0]["field"], "values.persona");
    }

    #[test]
    fn a_status_without_details_has_an_empty_list() {
        let status = tonic::Status::new(Code::NotFound, "Not Found");
        let body: serde_json::Value =
            serde_json::from_slice(&error_body(&rpc_status(), &status)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": 5, "message": "Not Found", "details": []})
        );
    }

    #[test]
    fn codes_map_as_the_gateways_do() {
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(http_status(Code::Aborted), StatusCode::CONFLICT);
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(
            http_status(Code::Unimplemented),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            http_status(Code::DeadlineExceeded),
            StatusCode::GATEWAY_TIMEOUT
        );
    }
}
