//! The gRPC edge: service handlers, proto conversions, and the one place
//! errors become statuses.

mod attributes;
mod convert;
mod definitions;
mod error;
mod settings;

pub use attributes::{Attributes, MAX_VALUES_PER_BATCH};
pub use definitions::{
    DEFAULT_PAGE_SIZE, Definitions, MAX_PAGE_SIZE, create_definition, save_definition,
    set_definition_archived,
};
pub use error::{ApiError, ERROR_DOMAIN, code};
pub use settings::WorkspaceSettings;
