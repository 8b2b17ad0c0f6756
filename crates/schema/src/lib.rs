//! Reads a LoopBack 3 app directory (`server/config.json`, `model-config.json`,
//! `datasources.json`, `middleware.json`, `component-config.json` and the model JSON files)
//! and compiles it into an [`App`]: raw JSON in, validated and inheritance-resolved models
//! out. Errors name the file and the JSON path; unknown keys are warnings.

mod app;
mod error;
mod load;
mod model;

pub use app::*;
pub use error::LoadError;
pub use load::{load_app, pluralize};
pub use model::*;
