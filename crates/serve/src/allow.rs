//! Which TCP peers may connect: `--allow-from` and FCGI_WEB_SERVER_ADDRS
//! (the variable FastCGI web servers and flup use). Empty means everyone.
//! The networks are the model's [`AllowedPeer`].

pub use rustgi_model::AllowedPeer;

/// FCGI_WEB_SERVER_ADDRS: comma-separated addresses.
pub fn from_environment() -> Result<Vec<AllowedPeer>, String> {
    match std::env::var("FCGI_WEB_SERVER_ADDRS") {
        Ok(list) => list
            .split(',')
            .filter(|a| !a.trim().is_empty())
            .map(|a| AllowedPeer::parse(a).map_err(|e| format!("FCGI_WEB_SERVER_ADDRS: {e}")))
            .collect(),
        Err(_) => Ok(Vec::new()),
    }
}
