//! The domain: attribute keys, definitions and values, parsed so that once
//! built they are valid, with no I/O. See CONTRACT.md sections 1, 3, 5 and 6.
//!
//! Layout:
//! - `error`: [`Error`] and [`Reason`], the one error type of the domain.
//! - `key`, `distinct_id`: [`AttributeKey`] and [`DistinctId`].
//! - `ids`: [`WorkspaceId`], [`PersonId`], [`ApiKeyId`], [`Mode`], [`KeyKind`].
//! - `config`: [`AttributeType`] and the per-type configs in [`AttributeConfig`].
//! - `definition`: [`AttributeDefinition`], its limits and updates.
//! - `value`: [`StoredValue`], what is stored and returned.
//! - `browser`: [`IdentityVerification`] and the origin patterns of browser writes.
//! - `coerce` (with `date` and `text` helpers): client input to [`StoredValue`],
//!   with the [`Adjustment`]s made on the way (`adjustment`).
//! - `update`: the update operations ([`Operation`]) and what each does to
//!   a stored value ([`Change`], [`Applied`]).

mod adjustment;
mod browser;
mod coerce;
mod config;
mod date;
mod definition;
mod distinct_id;
mod error;
mod ids;
mod key;
mod text;
mod update;
mod value;

pub use adjustment::Adjustment;
pub use browser::{
    IdentityVerification, PreflightOrigins, SharedPreflightOrigins, origin_allowed,
    parse_origin_pattern,
};
pub use coerce::{Coerced, coerce};
pub use config::{
    AttributeConfig, AttributeType, ChoiceConfig, DateConfig, MultiChoiceConfig, NumberConfig,
    TextConfig,
};
pub use definition::AttributeDefinition;
pub use distinct_id::DistinctId;
pub use error::{Error, Reason};
pub use ids::{ApiKeyId, Etag, KeyKind, Mode, OperationId, PersonId, WorkspaceId};
pub use key::AttributeKey;
pub use update::{Applied, Change, Operation};
pub use value::StoredValue;
