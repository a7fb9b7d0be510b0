//! The WSGI runtime: CPython embedded with pyo3, the PEP 3333 environ,
//! `start_response`, `wsgi.input`, `wsgi.errors`, `wsgi.file_wrapper`, and
//! the iteration of the application's response.
//!
//! This crate knows nothing of sockets or protocols: it takes a decoded
//! [`rustgi_model::Request`] with a [`BodyReader`], and emits
//! [`ResponseEvent`]s into a [`ResponseSender`].

#![deny(clippy::undocumented_unsafe_blocks)]

mod app;
mod body;
mod call;
pub mod embedded;
mod environ;
mod errors;
mod file_wrapper;
mod flup;
mod forwarded;
mod input;
mod interpreter;
mod paste;
mod paths;
mod pool;
mod responder;
mod response;
mod running;
mod stdio;
mod tag;
#[cfg(test)]
mod test_python;
mod venv;

pub use app::AppSpec;
pub use body::{BodyError, BodyReader, BodyWriter, Demand, SpoolLimits, body_pipe};
pub use call::Job;
/// For `benches/environ.rs` only: not part of the crate's API.
#[doc(hidden)]
pub use environ::EnvironBuilder;
pub use environ::EnvironSettings;
pub use file_wrapper::FileWrapper;
pub use forwarded::ForwardedScheme;
pub use interpreter::{BUILD_PYTHON_VERSION, Interpreter, PythonSetup, StartError};
pub use paths::Mount;
pub use pool::{Intake, PythonPool, RequestHook};
pub use responder::TimeoutAnswer;
pub use response::{
    Budget, Charge, Disconnected, LaneWriter, ResponseCloser, ResponseEvent, ResponseReceiver,
    ResponseSender, ResponseTarget, response_channel,
};
pub use running::{Overdue, Slow};
