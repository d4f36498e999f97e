//! `rescue.finalize_rescue` (contract §12): the rescue password goes where the ramdisk's init
//! turns it into a `rescue` user (`/etc/ipa-rescue-config/ipa-rescue-password`, a crypt hash),
//! `/etc/.rescued` marks the rescue, and after the reply the agent stops serving and exits. A
//! restarted agent sees the marker and idles (see [`crate::agent`]).

use crate::api::registry::{handler, CommandSpec, Mode, Params, Registry, Signature};
use crate::context::{AgentContext, ServeState};
use crate::errors::{CommandError, ErrorKind};
use serde_json::Value;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

pub const PASSWORD_FILE: &str = "/etc/ipa-rescue-config/ipa-rescue-password";
pub const MARKER: &str = "/etc/.rescued";

pub fn register(r: &mut Registry) {
    r.add(
        "rescue",
        "finalize_rescue",
        CommandSpec {
            mode: Mode::Sync,
            signature: Signature {
                required: &[],
                optional: &["rescue_password", "hashed"],
                open: false,
            },
            validator: None,
            handler: handler(finalize_rescue),
        },
    );
}

fn fail(msg: String) -> CommandError {
    CommandError::new(ErrorKind::CommandExecution, msg)
}

/// What goes into the password file: the hash as given, or (`hashed` false) a SHA-256 crypt
/// (`$5$`) of the plain password with a random salt, as IPA does.
pub fn password_hash(password: &str, hashed: bool) -> Result<String, CommandError> {
    if hashed {
        return Ok(password.to_string());
    }
    let params = sha_crypt::Sha256Params::new(sha_crypt::ROUNDS_DEFAULT)
        .map_err(|e| fail(format!("hashing the rescue password failed: {e:?}")))?;
    sha_crypt::sha256_simple(password, &params)
        .map_err(|e| fail(format!("hashing the rescue password failed: {e:?}")))
}

async fn finalize_rescue(ctx: Arc<AgentContext>, p: Params) -> Result<Value, CommandError> {
    if !ctx.guard.is_ramdisk() && ctx.host.root() == std::path::Path::new("/") {
        return Err(fail(
            "refusing to set up rescue mode on this machine: the agent is not running from a \
             ramdisk"
                .into(),
        ));
    }
    let password = match p.get("rescue_password") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let hashed = p.get("hashed").and_then(Value::as_bool).unwrap_or(false);
    let host = ctx.host.clone();
    tokio::task::spawn_blocking(move || -> Result<(), CommandError> {
        let hash = password_hash(&password, hashed)?;
        let file = host.path(PASSWORD_FILE);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("creating {} failed: {e}", dir.display())))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| {
                fail(format!(
                    "Rescue Operation failed when writing the hashed rescue password to the \
                     password file {}. Error {e}",
                    file.display()
                ))
            })?;
        std::io::Write::write_all(&mut f, hash.as_bytes())
            .map_err(|e| fail(format!("writing {} failed: {e}", file.display())))?;
        // As IPA: a missing marker is logged, the rescue still goes ahead.
        if let Err(e) = std::fs::write(host.path(MARKER), b"") {
            tracing::warn!("Failed to create rescue state file marker: {e}");
        }
        Ok(())
    })
    .await
    .map_err(|e| fail(format!("finalizing the rescue failed: {e}")))??;
    tracing::info!("rescue finalized: the API stops after this reply and the agent exits");
    ctx.stop_serving(ServeState::Rescued);
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_passwords_are_sha256_crypted() {
        let h = password_hash("s3cret", false).unwrap();
        assert!(h.starts_with("$5$"), "{h}");
        assert!(sha_crypt::sha256_check("s3cret", &h).is_ok());
        assert!(sha_crypt::sha256_check("other", &h).is_err());
        assert_eq!(password_hash("$6$x$y", true).unwrap(), "$6$x$y");
    }
}
