//! Svix webhook signatures, as AgentMail sends them: headers `svix-id`,
//! `svix-timestamp` (Unix seconds) and `svix-signature` (space-separated
//! `v1,<base64>` entries, one per active secret). The signed content is
//! `{svix-id}.{svix-timestamp}.{raw body}`, the key the base64 part of the
//! `whsec_…` secret, HMAC-SHA256, compared in constant time. A timestamp
//! more than five minutes from now is refused (a replay). A webhook is a
//! hint that triggers a re-read, never truth.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a webhook's timestamp may be from now, in seconds.
pub const TOLERANCE_S: i64 = 300;

/// Why a webhook was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SvixError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("svix-timestamp is not Unix seconds")]
    BadTimestamp,
    #[error("svix-timestamp is {0} s from now (more than {TOLERANCE_S} s: a replay or a wrong clock)")]
    Stale(i64),
    #[error("the secret is not whsec_<base64>")]
    BadSecret,
    #[error("no v1 signature matches the body")]
    NoMatch,
}

/// The HMAC key of a `whsec_…` secret.
pub fn key_of(secret: &str) -> Result<Vec<u8>, SvixError> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(b64)
        .map_err(|_| SvixError::BadSecret)
        .and_then(|k| if k.is_empty() { Err(SvixError::BadSecret) } else { Ok(k) })
}

fn mac(key: &[u8], id: &str, ts: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(id.as_bytes());
    m.update(b".");
    m.update(ts.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// Checks a webhook. `now_s` is the receiver's clock in Unix seconds.
pub fn verify(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_s: i64,
) -> Result<(), SvixError> {
    let id = id.ok_or(SvixError::Missing("svix-id"))?;
    let ts = timestamp.ok_or(SvixError::Missing("svix-timestamp"))?;
    let signature = signature.ok_or(SvixError::Missing("svix-signature"))?;
    let at: i64 = ts.trim().parse().map_err(|_| SvixError::BadTimestamp)?;
    let skew = at.saturating_sub(now_s);
    if skew.abs() > TOLERANCE_S {
        return Err(SvixError::Stale(skew));
    }
    let key = key_of(secret)?;
    for entry in signature.split(' ') {
        let Some(b64) = entry.strip_prefix("v1,") else { continue };
        let Ok(given) = STANDARD.decode(b64) else { continue };
        if mac(&key, id, ts, body).verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(SvixError::NoMatch)
}

/// The `svix-signature` value for a body (for tests and the sandbox).
pub fn sign(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> Result<String, SvixError> {
    let key = key_of(secret)?;
    Ok(format!("v1,{}", STANDARD.encode(mac(&key, id, timestamp, body).finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Svix's documented example: secret, id, timestamp, body and signature.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn svix_documented_example_verifies() {
        assert_eq!(sign(SECRET, ID, TS, BODY).unwrap(), SIG);
        assert_eq!(verify(SECRET, Some(ID), Some(TS), Some(SIG), BODY, 1_614_265_330), Ok(()));
        let rotated = format!("v1,AAAA v2,xyz {SIG}");
        assert_eq!(verify(SECRET, Some(ID), Some(TS), Some(&rotated), BODY, 1_614_265_400), Ok(()));
    }

    #[test]
    fn forged_replayed_and_incomplete_webhooks_are_refused() {
        let now = 1_614_265_330;
        assert_eq!(verify(SECRET, Some(ID), Some(TS), Some(SIG), br#"{"test": 1}"#, now), Err(SvixError::NoMatch));
        assert_eq!(verify(SECRET, Some("msg_other"), Some(TS), Some(SIG), BODY, now), Err(SvixError::NoMatch));
        assert_eq!(verify("whsec_b3RoZXI=", Some(ID), Some(TS), Some(SIG), BODY, now), Err(SvixError::NoMatch));
        assert_eq!(verify(SECRET, Some(ID), Some(TS), Some(SIG), BODY, now + 301), Err(SvixError::Stale(-301)));
        assert_eq!(verify(SECRET, Some(ID), Some(TS), Some(SIG), BODY, now - 400), Err(SvixError::Stale(400)));
        assert_eq!(verify(SECRET, None, Some(TS), Some(SIG), BODY, now), Err(SvixError::Missing("svix-id")));
        assert_eq!(verify(SECRET, Some(ID), Some("soon"), Some(SIG), BODY, now), Err(SvixError::BadTimestamp));
        assert_eq!(verify(SECRET, Some(ID), Some(TS), Some("v1,!!!"), BODY, now), Err(SvixError::NoMatch));
        assert_eq!(verify("whsec_", Some(ID), Some(TS), Some(SIG), BODY, now), Err(SvixError::BadSecret));
    }
}
