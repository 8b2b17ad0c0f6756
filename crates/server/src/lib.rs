//! The HTTP side of Portcullis: LoopBack 3's REST surface for every public model, its
//! error envelope, request bodies, and the middleware an app declares. Only this crate
//! speaks HTTP and JSON wire shapes.

pub mod access;
pub mod apps;
pub mod authorize;
pub mod body;
pub mod changes;
pub mod cluster;
pub mod error;
pub mod explorer;
pub mod groups;
pub mod hooks;
pub mod http;
pub mod instance;
pub mod mail;
pub mod observer;
pub mod openapi;
pub mod remote;
pub mod rest;
pub mod route;
pub mod secrets;
pub mod seed;
pub mod smtp;
pub mod throttle;
pub mod token;
pub mod users;

pub use error::ApiError;
pub use http::{router, Server, ServerBuilder, StartError};
