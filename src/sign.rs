//! Signed entries: a protected job signs the manifest it writes with an ed25519 key, and a
//! reader given trusted public keys refuses protected entries nobody trusted signed. So a
//! branch that can write to the bucket still cannot plant an entry `main` restores.
//!
//! The signature covers a canonical message (`signed_message`), not the JSON: every field
//! that decides what gets restored where, and nothing a JSON re-encoding could change.

use anyhow::{Result, bail};
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::entry::{ChunkDigests, Manifest};

pub use crate::env_vars::{
    CACHEGATE_SIGNING_KEY as SIGNING_KEY_VAR, CACHEGATE_TRUSTED_KEYS as TRUSTED_KEYS_VAR,
};

const PUBLIC_PREFIX: &str = "cachegate-ed25519:";
const SECRET_PREFIX: &str = "cachegate-ed25519-secret:";
/// What the `signature` field starts with, so a future scheme can sit beside it.
const SIGNATURE_PREFIX: &str = "ed25519:";
const MESSAGE_HEADER: &str = "cachegate-signed-manifest-v1";
/// The range digests are signed apart (`ChunkDigests::signature`), so the manifest's own
/// message stays what readers before them verify.
const CHUNKS_HEADER: &str = "cachegate-signed-chunks-v1";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A new key pair as text: (public, secret).
/// `cachegate keygen`: the pair on stdout, what to do with each line on stderr.
pub fn keygen_command() -> Result<crate::exit::Ending> {
    let (public, secret) = keygen()?;
    crate::outln!("{public}");
    crate::outln!("{secret}");
    eprintln!(
        "cachegate: line 1 is the public key: set it as CACHEGATE_TRUSTED_KEYS (a normal variable)\n\
         cachegate: line 2 is the secret key: set it as CACHEGATE_SIGNING_KEY (protected and masked), nowhere else"
    );
    Ok(crate::exit::Ending::Done)
}

pub fn keygen() -> Result<(String, String)> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    Ok((
        public_text(&key.verifying_key()),
        format!("{SECRET_PREFIX}{}", b64().encode(seed)),
    ))
}

pub fn public_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_PREFIX}{}", b64().encode(key.to_bytes()))
}

/// Parse `CACHEGATE_SIGNING_KEY`, registering it as a secret before anything can print it.
pub fn parse_signing_key(text: &str) -> Result<SigningKey> {
    let text = text.trim();
    crate::redact::register(text);
    if let Some(b) = text.strip_prefix(SECRET_PREFIX) {
        crate::redact::register(b);
    }
    let seed = text
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b| b64().decode(b).ok())
        .and_then(|v| <[u8; 32]>::try_from(v).ok());
    match seed {
        Some(seed) => Ok(SigningKey::from_bytes(&seed)),
        // Never echo the value: it is meant to be a secret, even when malformed.
        None => bail!(
            "{SIGNING_KEY_VAR} is not a cachegate signing key; it must be the \"{SECRET_PREFIX}...\" line `cachegate keygen` prints"
        ),
    }
}

/// Parse `CACHEGATE_TRUSTED_KEYS`: public keys separated by commas, spaces or newlines.
pub fn parse_trusted_keys(text: &str) -> Result<Vec<VerifyingKey>> {
    let mut keys = Vec::new();
    for word in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if word.starts_with(SECRET_PREFIX) {
            bail!(
                "{TRUSTED_KEYS_VAR} contains a secret signing key; it takes the public \"{PUBLIC_PREFIX}...\" line of `cachegate keygen`, and the secret line must be rotated"
            );
        }
        let key = word
            .strip_prefix(PUBLIC_PREFIX)
            .and_then(|b| b64().decode(b).ok())
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok());
        match key {
            Some(k) => keys.push(k),
            None => bail!(
                "{TRUSTED_KEYS_VAR} has {word:?}, which is not a public key; use the \"{PUBLIC_PREFIX}...\" line `cachegate keygen` prints"
            ),
        }
    }
    if keys.is_empty() {
        bail!(
            "{TRUSTED_KEYS_VAR} is set but holds no key; unset it or give a \"{PUBLIC_PREFIX}...\" key"
        );
    }
    Ok(keys)
}

/// The bytes that are signed: one `field value` line each, in a fixed order. Values are
/// JSON-quoted so no value can contain a line break and forge the next line.
pub fn signed_message(m: &Manifest) -> Vec<u8> {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let mut message = format!(
        "{MESSAGE_HEADER}\nformat {}\nscope {}\nname {}\nkey {}\narchive {}\nsize {}\nblake3 {}\npaths {}\n",
        m.format,
        q(&m.scope.to_string()),
        q(&m.name),
        q(&m.key),
        q(&m.archive.to_string()),
        m.archive_size,
        q(&m.archive_blake3),
        serde_json::to_string(&m.paths).expect("strings serialize"),
    );
    // What a restore rewrites is signed too; manifests without it sign as they always did.
    if let Some(r) = &m.relocation {
        message.push_str(&format!(
            "relocation {}\n",
            serde_json::to_string(r).expect("relocation serializes")
        ));
    }
    message.into_bytes()
}

/// The bytes signed for the range digests, bound to the archive they describe.
fn chunks_message(archive_blake3: &str, c: &ChunkDigests) -> Vec<u8> {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
    format!(
        "{CHUNKS_HEADER}\nblake3 {}\nsize {}\nchunks {}\n",
        q(archive_blake3),
        c.size,
        q(&c.blake3)
    )
    .into_bytes()
}

/// The value for the manifest's `signature` field.
pub fn sign(key: &SigningKey, m: &Manifest) -> String {
    signature_text(key, &signed_message(m))
}

/// The value for the range digests' `signature` field.
pub fn sign_chunks(key: &SigningKey, archive_blake3: &str, c: &ChunkDigests) -> String {
    signature_text(key, &chunks_message(archive_blake3, c))
}

fn signature_text(key: &SigningKey, message: &[u8]) -> String {
    let sig = key.sign(message);
    format!(
        "{SIGNATURE_PREFIX}{}:{}",
        b64().encode(key.verifying_key().to_bytes()),
        b64().encode(sig.to_bytes())
    )
}

/// Check that a trusted key signed this manifest; the error says why not, for the log.
pub fn verify(trusted: &[VerifyingKey], m: &Manifest) -> Result<()> {
    let Some(sig) = &m.signature else {
        bail!("it is not signed, and {TRUSTED_KEYS_VAR} requires a trusted signature");
    };
    let Some((public, sig)) = parse_signature(sig) else {
        bail!("its signature is malformed");
    };
    let Some(key) = trusted.iter().find(|k| k.to_bytes() == public) else {
        let shown = VerifyingKey::from_bytes(&public)
            .map(|k| public_text(&k))
            .unwrap_or_else(|_| "an invalid key".into());
        bail!("it is signed by {shown}, which is not in {TRUSTED_KEYS_VAR}");
    };
    if key.verify_strict(&signed_message(m), &sig).is_err() {
        bail!("its signature does not match its contents (the manifest was altered after signing)");
    }
    // They decide which ranges are fetched again and when an entry is judged damaged.
    if let Some(c) = &m.chunks {
        let same_key = c
            .signature
            .as_deref()
            .and_then(parse_signature)
            .filter(|(p, _)| *p == public);
        let signed = same_key.is_some_and(|(_, sig)| {
            key.verify_strict(&chunks_message(&m.archive_blake3, c), &sig)
                .is_ok()
        });
        if !signed {
            bail!(
                "its range digests are not signed by the key that signed it (the manifest was altered after signing)"
            );
        }
    }
    Ok(())
}

fn parse_signature(sig: &str) -> Option<([u8; 32], Signature)> {
    let rest = sig.strip_prefix(SIGNATURE_PREFIX)?;
    let (public, sig) = rest.split_once(':')?;
    let public = <[u8; 32]>::try_from(b64().decode(public).ok()?).ok()?;
    let sig = <[u8; 64]>::try_from(b64().decode(sig).ok()?).ok()?;
    Some((public, Signature::from_bytes(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_values_are_named() {
        let (public, secret) = keygen().unwrap();
        let key = parse_signing_key(&secret).unwrap();
        assert_eq!(public_text(&key.verifying_key()), public);
        let keys = parse_trusted_keys(&format!(" {public},\n{public} ")).unwrap();
        assert_eq!(keys.len(), 2);
        let e = parse_trusted_keys("cachegate-ed25519:nope").unwrap_err();
        assert!(e.to_string().contains("\"cachegate-ed25519:nope\""), "{e}");
        assert!(parse_trusted_keys(&secret).is_err());
        assert!(parse_trusted_keys(" , ").is_err());
        let e = parse_signing_key("cachegate-ed25519-secret:c2VjcmV0LXZhbHVl").unwrap_err();
        assert!(!e.to_string().contains("c2VjcmV0LXZhbHVl"), "{e}");
    }
}
