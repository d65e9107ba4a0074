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
}

impl Reason {
    /// Every reason, in the order of the contract's table, so that tests and
    /// the api layer can check that none is forgotten.
    pub const ALL: [Reason; 16] = [
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
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure that a client can act on: a reason to match on, a sentence for a
/// person, and the attribute it concerns where there is one.
///
/// `Display` prints only the message, because that is what goes into the
/// gRPC status; the reason and attribute travel in `ErrorInfo`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    reason: Reason,
    message: String,
    attribute: Option<String>,
}

impl Error {
    /// An error with the given reason and message, naming no attribute.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Error {
            reason,
            message: message.into(),
            attribute: None,
        }
    }

    /// An `invalid_attribute_definition` error; the message should start with
    /// the field it is about (`config.options[2]: ...`).
    pub fn invalid_definition(message: impl Into<String>) -> Self {
        Error::new(Reason::InvalidAttributeDefinition, message)
    }

    /// An `attribute_value_invalid` error.
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Error::new(Reason::AttributeValueInvalid, message)
    }

    /// Names the attribute this error is about (ErrorInfo metadata `attribute`).
    pub fn with_attribute(mut self, attribute: impl Into<String>) -> Self {
        self.attribute = Some(attribute.into());
        self
    }

    /// The reason clients match on.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The sentence for a person.
    pub fn message(&self) -> &str {
        &self.message
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
}
