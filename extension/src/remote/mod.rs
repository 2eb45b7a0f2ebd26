//! Talking to other nodes: interruptible libpq connections (`conn`) opened
//! with spock's connection parameters, and the typed questions and slot
//! operations spock sends to a provider (`provider`).

pub mod conn;
pub mod provider;

pub use conn::{Conn, CopyData, PqError};
use spock_core::dsn;

use crate::guc;

/// What a connection is for.
pub enum Purpose<'a> {
    /// Ordinary SQL (catalog queries, slot maintenance).
    Query,
    /// Logical replication (`replication=database`), for a subscription,
    /// whose name becomes the walsender's `application_name`.
    Replication { subscription: &'a str },
}

/// Connects to `dsn` (keyword/value or URI) with spock's defaults, then
/// `spock.extra_connection_options`, then the DSN's own values, then what
/// `purpose` fixes. Waits interruptibly. Errors never contain a password in
/// clear: callers put the DSN into messages only through
/// `errors::raise`, which masks.
pub fn connect(dsn: &str, purpose: Purpose<'_>) -> Result<Conn, PqError> {
    let extra_text = guc::extra_connection_options();
    let extra = conn::parse_conninfo(&extra_text).map_err(|e| PqError {
        sqlstate: Some("22023".into()),
        message: format!("spock.extra_connection_options is not a valid connection string: {e}"),
    })?;
    let forced: Vec<(&str, &str)> = match purpose {
        Purpose::Query => vec![("replication", "false"), ("fallback_application_name", "spock")],
        Purpose::Replication { subscription } => {
            vec![("replication", "database"), ("application_name", subscription)]
        }
    };
    Conn::connect(&dsn::connection_params(&extra, dsn, &forced))
}
