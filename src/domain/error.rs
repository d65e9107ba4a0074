//! The one error type of the domain and the reasons clients match on.

/// Why a request failed, as the lower-case code of CONTRACT.md section 5.
///
/// The api layer maps each reason to a gRPC code in one place; the domain only
/// decides which reason applies, so that the mapping can never disagree with
/// the code that raised the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The key is not declared (or is not a valid key at all).
    AttributeNotDefined,
    /// The value does not fit the attribute's type or config.
    AttributeValueInvalid,
    /// The value is longer than the attribute allows.
    AttributeValueTooLong,
    /// A write to an archived attribute.
    AttributeArchived,
    /// A public-key write while the workspace's client writes are off.
    ClientAttributeWritesDisabled,
    /// A public key on an RPC that only secret keys may call.
    SecretKeyRequired,
    /// The request carried no API key.
    MissingApiKey,
    /// The API key is unknown, malformed or revoked.
    InvalidApiKey,
    /// The distinct_id is empty, too long or contains control characters.
    InvalidDistinctId,
    /// No person has this distinct_id.
    PersonNotFound,
    /// A definition with this key already exists.
    AttributeAlreadyExists,
    /// No definition has this key.
    AttributeDefinitionNotFound,
    /// A definition (key, config, names) breaks a rule, or its type would change.
    InvalidAttributeDefinition,
    /// A batch write with no values or more values than allowed.
    TooManyValues,
    /// The database cannot be reached; the request is safe to retry.
    Unavailable,
    /// A request field outside the attribute rules is malformed (a page
    /// token, an update mask). Not in the contract's table, which names no
    /// reason for these; added so they too are typed, never INTERNAL.
    InvalidArgument,
    /// An update operation that does not fit the attribute's type, or two
    /// updates of one attribute in one request.
    AttributeOperationInvalid,
    /// An `if_etag` precondition failed: the value changed since it was read.
    AttributeValueChanged,
    /// A request_id repeated with another request body or on another RPC.
    RequestIdReused,
    /// A request_id whose first request is still being applied.
    RequestInProgress,
    /// A public-key write to an attribute whose definition has
    /// `client_writable: false`.
    AttributeNotClientWritable,
    /// A public key over its rate, per key or per person.
    RateLimited,
    /// A public-key write without a valid identity signature where the
    /// workspace requires one.
    IdentityVerificationFailed,
    /// A public-key request from an origin outside `allowed_origins`.
    OriginNotAllowed,
    /// Creating an identity secret while the most allowed are active. Not in
    /// the contract's table (it names none); FAILED_PRECONDITION.
    TooManyIdentitySecrets,
    /// No identity secret has this id. Not in the contract's table.
    IdentitySecretNotFound,
    /// A request larger than `--max-request-bytes`. Not in the contract's
    /// table (which asks for "a clean status"); RESOURCE_EXHAUSTED, REST 413.
    RequestTooLarge,
    /// DeleteAttributeDefinition of a definition that isn't archived.
    AttributeNotArchived,
    /// No long-running operation of the workspace has this name. Not in
    /// the contract's table; NOT_FOUND.
    OperationNotFound,
}

impl Reason {
    /// Every reason, in the order of the contract's table, so that tests and
    /// the api layer can check that none is forgotten.
    pub const ALL: [Reason; 29] = [
        Reason::AttributeNotDefined,
        Reason::AttributeValueInvalid,
        Reason::AttributeValueTooLong,
        Reason::AttributeArchived,
        Reason::ClientAttributeWritesDisabled,
        Reason::SecretKeyRequired,
        Reason::MissingApiKey,
        Reason::InvalidApiKey,
        Reason::InvalidDistinctId,
        Reason::PersonNotFound,
        Reason::AttributeAlreadyExists,
        Reason::AttributeDefinitionNotFound,
        Reason::InvalidAttributeDefinition,
        Reason::TooManyValues,
        Reason::Unavailable,
        Reason::InvalidArgument,
        Reason::AttributeOperationInvalid,
        Reason::AttributeValueChanged,
        Reason::RequestIdReused,
        Reason::RequestInProgress,
        Reason::AttributeNotClientWritable,
        Reason::RateLimited,
        Reason::IdentityVerificationFailed,
        Reason::OriginNotAllowed,
        Reason::TooManyIdentitySecrets,
        Reason::IdentitySecretNotFound,
        Reason::RequestTooLarge,
        Reason::AttributeNotArchived,
        Reason::OperationNotFound,
    ];

    /// The code exactly as clients match on it (`google.rpc.ErrorInfo.reason`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::AttributeNotDefined => "attribute_not_defined",
            Reason::AttributeValueInvalid => "attribute_value_invalid",
            Reason::AttributeValueTooLong => "attribute_value_too_long",
            Reason::AttributeArchived => "attribute_archived",
            Reason::ClientAttributeWritesDisabled => "client_attribute_writes_disabled",
            Reason::SecretKeyRequired => "secret_key_required",
            Reason::MissingApiKey => "missing_api_key",
            Reason::InvalidApiKey => "invalid_api_key",
            Reason::InvalidDistinctId => "invalid_distinct_id",
            Reason::PersonNotFound => "person_not_found",
            Reason::AttributeAlreadyExists => "attribute_already_exists",
            Reason::AttributeDefinitionNotFound => "attribute_definition_not_found",
            Reason::InvalidAttributeDefinition => "invalid_attribute_definition",
            Reason::TooManyValues => "too_many_values",
            Reason::Unavailable => "unavailable",
            Reason::InvalidArgument => "invalid_argument",
            Reason::AttributeOperationInvalid => "attribute_operation_invalid",
            Reason::AttributeValueChanged => "attribute_value_changed",
            Reason::RequestIdReused => "request_id_reused",
            Reason::RequestInProgress => "request_in_progress",
            Reason::AttributeNotClientWritable => "attribute_not_client_writable",
            Reason::RateLimited => "rate_limited",
            Reason::IdentityVerificationFailed => "identity_verification_failed",
            Reason::OriginNotAllowed => "origin_not_allowed",
            Reason::TooManyIdentitySecrets => "too_many_identity_secrets",
            Reason::IdentitySecretNotFound => "identity_secret_not_found",
            Reason::RequestTooLarge => "request_too_large",
            Reason::AttributeNotArchived => "attribute_not_archived",
            Reason::OperationNotFound => "operation_not_found",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure that a client can act on: a reason to match on, a sentence for a
/// person, and, where there are ones, the request field and the attribute it
/// concerns.
///
/// `Display` prints only the message, because that is what goes into the
/// gRPC status; the reason and attribute travel in `ErrorInfo`. Where the
/// error belongs is data ([`Error::field`]), so that no caller takes the
/// message apart to find it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    reason: Reason,
    /// The path of the field the error is about (`config.options[2]`).
    field: Option<String>,
    /// `{field}: {detail}`, or the detail alone when there is no field. Kept
    /// whole because it is the status message, and [`Error::message`] lends it.
    message: String,
    attribute: Option<String>,
    /// The current etag of the value, for `attribute_value_changed`, so the
    /// client can retry without another read (`None`: no value is stored).
    current_etag: Option<String>,
}

impl Error {
    /// An error with the given reason and message, naming no field and no
    /// attribute.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Error {
            reason,
            field: None,
            message: message.into(),
            attribute: None,
            current_etag: None,
        }
    }

    /// An error about the field at `field` (a path such as `key`, `config`
    /// or `config.options[2]`); `detail` is the rest of the sentence, and the
    /// message is `{field}: {detail}`.
    pub fn new_at(reason: Reason, field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        let field = field.into();
        Error {
            reason,
            message: format!("{field}: {}", detail.as_ref()),
            field: Some(field),
            attribute: None,
            current_etag: None,
        }
    }

    /// An `invalid_attribute_definition` error about the field at `field`;
    /// see [`Error::new_at`].
    pub fn invalid_definition_at(field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        Error::new_at(Reason::InvalidAttributeDefinition, field, detail)
    }

    /// An `attribute_value_invalid` error.
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Error::new(Reason::AttributeValueInvalid, message)
    }

    /// Places the error inside the field `parent`, for code that builds a
    /// path in steps: `options[2]` becomes `config.options[2]`, and an
    /// error naming no field names `parent`.
    pub fn at(self, parent: &str) -> Self {
        let field = match self.field() {
            Some(field) => format!("{parent}.{field}"),
            None => parent.to_owned(),
        };
        let mut nested = Error::new_at(self.reason, field, self.detail());
        nested.attribute = self.attribute;
        nested.current_etag = self.current_etag;
        nested
    }

    /// Names the attribute this error is about (ErrorInfo metadata `attribute`).
    pub fn with_attribute(mut self, attribute: impl Into<String>) -> Self {
        self.attribute = Some(attribute.into());
        self
    }

    /// Names the value's current etag (ErrorInfo metadata `etag`); an empty
    /// string says that no value is stored.
    pub fn with_current_etag(mut self, etag: impl Into<String>) -> Self {
        self.current_etag = Some(etag.into());
        self
    }

    /// The current etag this error reports, if any.
    pub fn current_etag(&self) -> Option<&str> {
        self.current_etag.as_deref()
    }

    /// The reason clients match on.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The sentence for a person: `{field}: {detail}` when the error is
    /// about a field, else the detail alone.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The path of the field the error is about, if any (`config.max_length`).
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The message without the `{field}: ` it starts with, if any.
    pub fn detail(&self) -> &str {
        match &self.field {
            // The message was built as "{field}: {detail}".
            Some(field) => &self.message[field.len() + 2..],
            None => &self.message,
        }
    }

    /// The attribute the error is about, if any.
    pub fn attribute(&self) -> Option<&str> {
        self.attribute.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_the_contract_code() {
        let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            codes,
            [
                "attribute_not_defined",
                "attribute_value_invalid",
                "attribute_value_too_long",
                "attribute_archived",
                "client_attribute_writes_disabled",
                "secret_key_required",
                "missing_api_key",
                "invalid_api_key",
                "invalid_distinct_id",
                "person_not_found",
                "attribute_already_exists",
                "attribute_definition_not_found",
                "invalid_attribute_definition",
                "too_many_values",
                "unavailable",
                "invalid_argument",
                "attribute_operation_invalid",
                "attribute_value_changed",
                "request_id_reused",
                "request_in_progress",
                "attribute_not_client_writable",
                "rate_limited",
                "identity_verification_failed",
                "origin_not_allowed",
                "too_many_identity_secrets",
                "identity_secret_not_found",
                "request_too_large",
                "attribute_not_archived",
                "operation_not_found",
            ]
        );
        assert_eq!(Reason::TooManyValues.to_string(), "too_many_values");
    }

    #[test]
    fn error_displays_its_message_and_keeps_the_attribute() {
        let e = Error::invalid_value("bad value").with_attribute("age");
        assert_eq!(e.to_string(), "bad value");
        assert_eq!(e.reason(), Reason::AttributeValueInvalid);
        assert_eq!(e.message(), "bad value");
        assert_eq!(e.attribute(), Some("age"));
        assert_eq!(Error::new(Reason::Unavailable, "x").attribute(), None);
    }

    #[test]
    fn the_field_is_data_and_the_message_starts_with_it() {
        let e = Error::invalid_definition_at("config.max_length", "0 is out of range.");
        assert_eq!(e.reason(), Reason::InvalidAttributeDefinition);
        assert_eq!(e.field(), Some("config.max_length"));
        assert_eq!(e.detail(), "0 is out of range.");
        assert_eq!(e.message(), "config.max_length: 0 is out of range.");
        assert_eq!(e.to_string(), e.message());

        let plain = Error::invalid_value("bad value");
        assert_eq!((plain.field(), plain.detail()), (None, "bad value"));
    }

    #[test]
    fn at_nests_the_field_path_and_keeps_the_rest() {
        let nested = Error::new_at(Reason::AttributeNotDefined, "options[2]", "no.")
            .with_attribute("topics")
            .at("config");
        assert_eq!(nested.field(), Some("config.options[2]"));
        assert_eq!(nested.message(), "config.options[2]: no.");
        assert_eq!(nested.reason(), Reason::AttributeNotDefined);
        assert_eq!(nested.attribute(), Some("topics"));
        let whole = Error::new(Reason::InvalidAttributeDefinition, "not an object.").at("config");
        assert_eq!(whole.field(), Some("config"));
        assert_eq!(whole.message(), "config: not an object.");
    }
}
