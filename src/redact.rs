//! Secrets never reach the log. Every credential cachegate reads is registered here the
//! moment it is read, and every line for people passes through `redact` on its way out, so
//! a token cannot leak through an error message from a library we do not control (a
//! retried request's URL, a server's echo of a header, a presigned query string).

use std::sync::{Mutex, OnceLock};

use base64::Engine as _;

const MASK: &str = "[redacted]";

/// Query parameters that carry credentials in presigned or token-bearing URLs.
const SECRET_PARAMS: &[&str] = &[
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "signature",
    "sig",
    "token",
    "access_token",
    "private_token",
    "job_token",
    "awsaccesskeyid",
    "x-goog-signature",
    "x-goog-credential",
];

fn registry() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remember a secret value, in every form it may be printed in: plain, URL-encoded and
/// base64 (standard and URL-safe, as in a basic-auth header or a JWT).
pub fn register(secret: &str) {
    // Very short values would mask ordinary words; no real credential is this short.
    if secret.len() < 4 {
        return;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut forms = vec![
        secret.to_string(),
        percent_encode(secret),
        b64.encode(secret),
        b64url.encode(secret),
    ];
    // Unpadded base64 of the value, so a secret inside a longer base64 blob is still found
    // when it starts the blob (basic auth "user:password" encodes the user first).
    forms.push(b64.encode(secret).trim_end_matches('=').to_string());
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    for f in forms {
        if f.len() >= 4 && !reg.contains(&f) {
            reg.push(f);
        }
    }
    // Longest first, so a value that contains another is masked whole.
    reg.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Register the value of an environment variable, if set; returns it.
pub fn secret_env(name: &str) -> Option<String> {
    let v = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    register(&v);
    Some(v)
}

/// How a secret looks inside a URL: everything but RFC 3986's unreserved characters escaped.
pub fn percent_encode(s: &str) -> String {
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, ESCAPED).to_string()
}

/// `text` with every registered secret, URL userinfo and credential-bearing query
/// parameter masked.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    {
        let reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        for s in reg.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
    }
    mask_userinfo(&mask_query(&out))
}

/// `name=value` pairs after `?` or `&` whose name carries a credential.
fn mask_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['?', '&']) {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let name_end = rest
            .find(|c: char| c == '=' || c == '&' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if rest[name_end..].starts_with('=')
            && SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str())
        {
            out.push_str(name);
            out.push('=');
            out.push_str(MASK);
            let value = &rest[name_end + 1..];
            let value_end = value
                .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace())
                .unwrap_or(value.len());
            rest = &value[value_end..];
        }
    }
    out.push_str(rest);
    out
}

/// `scheme://user:password@host` -> `scheme://[redacted]@host`.
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let authority_end = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            out.push_str(MASK);
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_in_every_form() {
        register("s3cr3t/with+chars=");
        let b64 = base64::engine::general_purpose::STANDARD.encode("s3cr3t/with+chars=");
        for text in [
            "token s3cr3t/with+chars= refused".to_string(),
            "url ?x=s3cr3t%2Fwith%2Bchars%3D".to_string(),
            format!("header Basic {b64}"),
        ] {
            let r = redact(&text);
            assert!(!r.contains("s3cr3t"), "{r}");
            assert!(!r.contains(&b64), "{r}");
            assert!(r.contains(MASK), "{r}");
        }
    }

    #[test]
    fn presigned_queries_and_userinfo_are_masked() {
        let r = redact(
            "GET https://bucket.s3.example/k?X-Amz-Credential=AKIA%2F&X-Amz-Signature=abcdef&partNumber=2 failed",
        );
        assert!(!r.contains("AKIA") && !r.contains("abcdef"), "{r}");
        assert!(r.contains("partNumber=2") && r.ends_with("failed"), "{r}");
        let r = redact("cannot reach https://user:pa55word@cache.example/x");
        assert_eq!(r, "cannot reach https://[redacted]@cache.example/x");
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let t = "cachegate: hit pip 3f2a9c1e (local) · 3 files, 1.2 kB in 0.1 s from /tmp/x?y";
        assert_eq!(redact(t), t);
    }
}
