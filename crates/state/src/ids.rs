//! Identifiers: job requests (random), jobs (deterministic), tasks, and backend
//! tokens (random, stored hashed).

use data_encoding::{BASE32_NOPAD, HEXLOWER};
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// A new job request id: 10 bytes from a CSPRNG, base32, lowercase: 16
/// characters of `[a-z2-7]` (e.g. `knn3p53ur6l773g6`).
pub fn new_job_request_id() -> String {
    let bytes: [u8; 10] = rand::random();
    BASE32_NOPAD.encode(&bytes).to_ascii_lowercase()
}

/// Whether `id` is acceptable as a job request id: 16 characters of
/// `[a-z0-9]` (the RAP API's pattern; generated ids use only `[a-z2-7]`).
pub fn is_valid_job_request_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The deterministic id of the job for `action` in job request
/// `job_request_id`: the first 10 bytes of SHA-1 of `"<request id>\n<action>"`,
/// base32, lowercase (16 characters). Re-creating a database from the same
/// requests therefore gives the same job ids.
pub fn job_id(job_request_id: &str, action: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(job_request_id.as_bytes());
    hasher.update(b"\n");
    hasher.update(action.as_bytes());
    let digest = hasher.finalize();
    BASE32_NOPAD.encode(&digest[..10]).to_ascii_lowercase()
}

/// The id of a job's `attempt`-th RUNJOB task (1-based): `<job id>-NNN`, so
/// that lexical order is creation order.
pub fn runjob_task_id(job_id: &str, attempt: u32) -> String {
    format!("{job_id}-{attempt:03}")
}

/// The id of the CANCELJOB task that cancels RUNJOB task `runjob_task_id`.
pub fn canceljob_task_id(runjob_task_id: &str) -> String {
    format!("{runjob_task_id}-cancel")
}

/// A new backend token: 32 bytes from a CSPRNG as 64 lowercase hex digits.
/// Only its SHA-256 is stored (see [`hash_token`]).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    HEXLOWER.encode(&bytes)
}

/// The stored form of a token: SHA-256, lowercase hex. Tokens carry 256 bits
/// of entropy, so a fast hash is enough (a slow password hash protects
/// low-entropy secrets; it would only cost time on every agent request here).
pub fn hash_token(token: &str) -> String {
    HEXLOWER.encode(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_lowercase_base32() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = new_job_request_id();
            assert_eq!(id.len(), 16);
            assert!(
                id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')),
                "{id}"
            );
            assert!(is_valid_job_request_id(&id));
            assert!(seen.insert(id));
        }
        assert!(!is_valid_job_request_id("KNN3P53UR6L773G6"));
        assert!(!is_valid_job_request_id("knn3p53ur6l773g"));
    }

    #[test]
    fn job_id_is_sha1_prefix_in_base32() {
        let id = job_id("abc", "def");
        let digest = Sha1::digest(b"abc\ndef");
        assert_eq!(id, BASE32_NOPAD.encode(&digest[..10]).to_lowercase());
        assert_eq!(id.len(), 16);
        assert_eq!(id, job_id("abc", "def"));
        assert_ne!(id, job_id("abc", "deg"));
        // The newline separator is part of the hashed text.
        assert_eq!(job_id("abc\ndef", ""), {
            let d = Sha1::digest(b"abc\ndef\n");
            BASE32_NOPAD.encode(&d[..10]).to_lowercase()
        });
    }

    #[test]
    fn known_job_id() {
        // Computed independently: python3 -c 'import base64,hashlib;
        // print(base64.b32encode(hashlib.sha1(b"knn3p53ur6l773g6\ngenerate_dataset").digest()[:10]).decode().lower())'
        assert_eq!(
            job_id("knn3p53ur6l773g6", "generate_dataset"),
            "q2nxbf2yr226fiaw"
        );
    }

    #[test]
    fn task_ids() {
        assert_eq!(runjob_task_id("abc", 1), "abc-001");
        assert_eq!(runjob_task_id("abc", 12), "abc-012");
        assert_eq!(canceljob_task_id("abc-001"), "abc-001-cancel");
    }

    #[test]
    fn tokens_hash_stably() {
        let t = new_token();
        assert_eq!(t.len(), 64);
        assert_eq!(hash_token(&t), hash_token(&t));
        assert_ne!(hash_token(&t), hash_token(&new_token()));
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
