//! Meta's webhook signatures: `X-Hub-Signature-256: sha256=<hex>`, the
//! HMAC-SHA256 of the raw body under the app secret, compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::meta::Secret;

/// The signature header Meta sends with every webhook.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Checks `header` (the signature header's value, if any) against `body`.
pub fn verify(secret: &Secret, body: &[u8], header: Option<&str>) -> Result<(), &'static str> {
    let header = header.ok_or("no X-Hub-Signature-256 header")?;
    let hex = header.strip_prefix("sha256=").ok_or("X-Hub-Signature-256 is not sha256=<hex>")?;
    let given = decode_hex(hex).ok_or("X-Hub-Signature-256 is not sha256=<hex>")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).map_err(|_| "unusable secret")?;
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| "signature does not match the body")
}

/// The header value for `body` (for tests and the sandbox).
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    // Digits only: `from_str_radix` also takes a sign (`+a` is 0x0a).
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Shopify's webhook signature header: the base64 HMAC-SHA256 of the raw
/// body under the app's client secret.
pub const SHOPIFY_HMAC_HEADER: &str = "x-shopify-hmac-sha256";
/// Shopify's webhook id header (the same on every redelivery: the key that
/// de-duplicates them).
pub const SHOPIFY_WEBHOOK_ID_HEADER: &str = "x-shopify-webhook-id";
pub const SHOPIFY_TOPIC_HEADER: &str = "x-shopify-topic";

/// Checks a Shopify webhook's `X-Shopify-Hmac-Sha256` against `body`
/// (compared in constant time by the MAC).
pub fn verify_shopify(secret: &Secret, body: &[u8], header: Option<&str>) -> Result<(), &'static str> {
    use base64::Engine as _;
    let header = header.ok_or("no X-Shopify-Hmac-Sha256 header")?;
    let given = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|_| "X-Shopify-Hmac-Sha256 is not base64")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).map_err(|_| "unusable secret")?;
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| "signature does not match the body")
}

/// The `X-Shopify-Hmac-Sha256` value for `body` (for tests and the sandbox).
pub fn sign_shopify(secret: &Secret, body: &[u8]) -> String {
    use base64::Engine as _;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_shopify_body_signed_with_the_secret_passes() {
        let secret = Secret::new("shpss_s3cret".into());
        let body = br#"{"id":820982911946154508}"#;
        let good = sign_shopify(&secret, body);
        assert!(verify_shopify(&secret, body, Some(&good)).is_ok());
        assert!(verify_shopify(&secret, b"{}", Some(&good)).is_err(), "another body");
        assert!(verify_shopify(&Secret::new("other".into()), body, Some(&good)).is_err(), "another secret");
        assert_eq!(verify_shopify(&secret, body, None), Err("no X-Shopify-Hmac-Sha256 header"));
        assert_eq!(verify_shopify(&secret, body, Some("not base64!")), Err("X-Shopify-Hmac-Sha256 is not base64"));
        assert!(verify_shopify(&secret, body, Some("AAAA")).is_err(), "a short MAC");
    }

    #[test]
    fn only_the_body_signed_with_the_secret_passes() {
        let secret = Secret::new("s3cret".into());
        let body = br#"{"object":"ad_account","entry":[]}"#;
        let good = sign(&secret, body);
        assert!(verify(&secret, body, Some(&good)).is_ok());
        assert!(verify(&secret, b"{}", Some(&good)).is_err(), "another body");
        assert!(verify(&Secret::new("other".into()), body, Some(&good)).is_err(), "another secret");
        assert_eq!(verify(&secret, body, None), Err("no X-Hub-Signature-256 header"));
        assert!(verify(&secret, body, Some("sha1=abc")).is_err());
        assert!(verify(&secret, body, Some("sha256=zz")).is_err());
        // A sign where a leading 0 was is no hex digit (`from_str_radix`
        // alone reads `+a` as 0x0a; found by tests/fuzz.rs).
        let hex = &good["sha256=".len()..];
        let pair = (0..64).step_by(2).find(|&i| &hex[i..=i] == "0").expect("a pair with a leading 0 in this MAC");
        let forged = format!("sha256={}+{}", &hex[..pair], &hex[pair + 1..]);
        assert_eq!(verify(&secret, body, Some(&forged)), Err("X-Hub-Signature-256 is not sha256=<hex>"));
    }
}
