//! Signed checkpoints: C2SP `tlog-checkpoint` bodies in C2SP signed notes, with Ed25519 keys
//! in the formats of Go's `golang.org/x/mod/sumdb/note`.
//!
//! A note is its text (lines ending in `\n`), a blank line, and signature lines
//! `— <key name> <base64(key id || signature)>`. The key id is the first 4 bytes of
//! `SHA-256(name || 0x0A || 0x01 || public key)`. Parsing refuses anything malformed with an error,
//! never a panic: notes and keys come from outside.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// The algorithm byte of an Ed25519 key in the note formats.
const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";
/// Go's note refuses more signatures than this; so do we, for the same reason (cost).
const MAX_SIGNATURES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("malformed key: {0}")]
    Malformed(&'static str),
    #[error("the key's id {stated:08x} is not the one its name and public key give ({actual:08x})")]
    WrongKeyId { stated: u32, actual: u32 },
    #[error("the key is not an Ed25519 key (algorithm {0:#04x})")]
    UnknownAlgorithm(u8),
    #[error("no system randomness: {0}")]
    Random(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("the note is not signed by {expected} (signed by: {found})")]
    NotSignedByKey { expected: String, found: String },
    #[error("the signature by {0} does not verify: the note was altered or signed with another key")]
    BadSignature(String),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    #[error("the checkpoint's origin is {found:?}, the key's name {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

/// A valid key name (and origin): not empty, no whitespace, no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Splits `<name>+<8 hex digits>+<base64>` into its parts, the key decoded.
fn split_key(s: &str) -> Result<(&str, u32, [u8; 32]), KeyError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(KeyError::Malformed("expected NAME+KEYID+KEY"));
    };
    if !is_valid_name(name) {
        return Err(KeyError::Malformed("the name is empty or holds a space or '+'"));
    }
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::Malformed("the key id is not 8 hex digits"));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| KeyError::Malformed("the key id is not 8 hex digits"))?;
    let raw = B64.decode(key).map_err(|_| KeyError::Malformed("the key is not base64"))?;
    match raw.split_first() {
        None => Err(KeyError::Malformed("the key is empty")),
        Some((&ALG_ED25519, k)) => {
            let k: [u8; 32] = k.try_into().map_err(|_| KeyError::Malformed("an Ed25519 key is 32 bytes"))?;
            Ok((name, id, k))
        }
        Some((&alg, _)) => Err(KeyError::UnknownAlgorithm(alg)),
    }
}

/// A public key that checks notes: `<name>+<hex key id>+<base64(0x01 || public key)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl Verifier {
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, id, public) = split_key(s.trim_end_matches(['\n', '\r']))?;
        let actual = key_id(name, &public);
        if actual != id {
            return Err(KeyError::WrongKeyId { stated: id, actual });
        }
        let key = VerifyingKey::from_bytes(&public).map_err(|_| KeyError::Malformed("not an Ed25519 public key"))?;
        Ok(Verifier { name: name.to_owned(), id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// Checks that `note` carries a valid signature by this key; returns the signed text.
    /// Signatures by other keys are ignored, as Go's `note.Open` does.
    pub fn open<'n>(&self, note: &'n str) -> Result<&'n str, NoteError> {
        let (text, sigs) = split_note(note)?;
        let mut found = Vec::new();
        for (name, id, sig) in sigs {
            if name == self.name && id == self.id {
                return self
                    .key
                    .verify_strict(text.as_bytes(), &sig)
                    .map(|()| text)
                    .map_err(|_| NoteError::BadSignature(self.label()));
            }
            found.push(format!("{name}+{id:08x}"));
        }
        Err(NoteError::NotSignedByKey { expected: self.label(), found: found.join(", ") })
    }

    /// `name+keyid`, how Go's note names a key in messages.
    pub fn label(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(k))
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({self})")
    }
}

/// A private key that signs notes: `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`.
/// It prints only its public half.
#[derive(Clone)]
pub struct Signer {
    name: String,
    id: u32,
    key: SigningKey,
}

impl Signer {
    /// A new key from the system's randomness.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Self::from_seed(name, seed)
    }

    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_name(name) {
            return Err(KeyError::Malformed("the name is empty or holds a space or '+'"));
        }
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Signer { name: name.to_owned(), id, key })
    }

    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let rest = s
            .trim_end_matches(['\n', '\r'])
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(KeyError::Malformed("a private key starts PRIVATE+KEY+"))?;
        let (name, id, seed) = split_key(rest)?;
        let signer = Self::from_seed(name, seed)?;
        if signer.id != id {
            return Err(KeyError::WrongKeyId { stated: id, actual: signer.id });
        }
        Ok(signer)
    }

    /// The key file's contents. Keep it secret.
    pub fn to_private_key(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.id, B64.encode(k))
    }

    pub fn verifier(&self) -> Verifier {
        Verifier { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed note: `text` (lines ending in `\n`), a blank line, one signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob)))
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.verifier())
    }
}

/// A note's text: valid UTF-8 (given), no control characters but `\n`, not empty, ending in `\n`.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text must end with a newline"));
    }
    if text.contains("\n\n") {
        return Err(NoteError::Malformed("the text holds a blank line"));
    }
    check_chars(text)
}

fn check_chars(s: &str) -> Result<(), NoteError> {
    if s.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("a control character other than newline"));
    }
    Ok(())
}

type SignatureLine<'n> = (&'n str, u32, Signature);

/// Splits a note at its last blank line into the text and its parsed signature lines.
fn split_note(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    check_chars(note)?;
    let split = note.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Malformed("no signature line, or one without its newline"));
    }
    let mut out = Vec::new();
    for line in sigs[..sigs.len() - 1].split('\n') {
        let line = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed("a signature line must start '— '"))?;
        let (name, b64) = line.split_once(' ').ok_or(NoteError::Malformed("a signature line is '— NAME SIGNATURE'"))?;
        let blob = B64.decode(b64).map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        if !is_valid_name(name) || blob.len() < 5 {
            return Err(NoteError::Malformed("a signature line with a bad name or a short signature"));
        }
        if out.len() == MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
        // Another algorithm's signature may have another length: only ours must be 64 bytes.
        let sig = Signature::from_slice(&blob[4..]).unwrap_or_else(|_| Signature::from_bytes(&[0; 64]));
        out.push((name, id, sig));
    }
    Ok((text, out))
}

/// A C2SP `tlog-checkpoint` body: origin, tree size, root hash, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// Parses a body; extension lines after the third are allowed, as C2SP says, and ignored.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root), Some(_)) = (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(NoteError::MalformedCheckpoint("fewer than three lines"));
        };
        if origin.is_empty() {
            return Err(NoteError::MalformedCheckpoint("empty origin"));
        }
        let n: u64 = size.parse().map_err(|_| NoteError::MalformedCheckpoint("the size is not a decimal number"))?;
        if n.to_string() != size {
            return Err(NoteError::MalformedCheckpoint("the size is not in canonical decimal"));
        }
        let root = B64
            .decode(root)
            .ok()
            .and_then(|r| <Hash>::try_from(r).ok())
            .ok_or(NoteError::MalformedCheckpoint("the root is not a base64 32-byte hash"))?;
        Ok(Checkpoint { origin: origin.to_owned(), size: n, root })
    }

    pub fn sign(&self, signer: &Signer) -> Result<String, NoteError> {
        signer.sign(&self.body())
    }

    /// Verifies a signed checkpoint with `key` and parses it; its origin must be the key's name.
    pub fn open(note: &str, key: &Verifier) -> Result<Self, NoteError> {
        let cp = Self::parse(key.open(note)?)?;
        if cp.origin != key.name() {
            return Err(NoteError::WrongOrigin { expected: key.name().to_owned(), found: cp.origin });
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    //! Key formats and signatures against Go's `sumdb/note` test vectors (note_test.go).
    use super::*;
    use proptest::prelude::*;

    const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const PETER_SIG: &str =
        "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str =
        "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    #[test]
    fn go_note_vectors() {
        let signer = Signer::parse(PETER_SKEY).unwrap();
        assert_eq!(signer.to_private_key(), PETER_SKEY);
        assert_eq!(signer.verifier().to_string(), PETER_VKEY);
        let v = Verifier::parse(PETER_VKEY).unwrap();
        assert_eq!(v.key_id(), 0xc74f20a3);
        assert_eq!(v.to_string(), PETER_VKEY);
        // Ed25519 is deterministic: Go's exact note.
        let note = signer.sign(TEXT).unwrap();
        assert_eq!(note, format!("{TEXT}\n{PETER_SIG}"));
        assert_eq!(v.open(&note).unwrap(), TEXT);
        // Go's note signed by two keys: each opens with its own, the other's line ignored.
        let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        assert_eq!(v.open(&both).unwrap(), TEXT);
        assert_eq!(Verifier::parse(ENOCH_VKEY).unwrap().open(&both).unwrap(), TEXT);
        // Only Enoch's: not signed by Peter.
        let enoch_only = format!("{TEXT}\n{ENOCH_SIG}");
        assert!(matches!(v.open(&enoch_only), Err(NoteError::NotSignedByKey { .. })));
        // Go's "invalid signature" case: bytes changed inside the signature.
        let bad = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        assert!(matches!(v.open(&bad), Err(NoteError::BadSignature(_)) | Err(NoteError::Malformed(_))));
        let edited = note.replacen("cryptography", "cryptographx", 1);
        assert_eq!(v.open(&edited), Err(NoteError::BadSignature("PeterNeumann+c74f20a3".into())));
    }

    #[test]
    fn go_bad_notes_are_malformed() {
        let v = Verifier::parse(PETER_VKEY).unwrap();
        let bad = [
            TEXT.to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
            format!("{TEXT}\n{}", PETER_SIG.repeat(101)),
        ];
        for msg in bad {
            assert!(matches!(v.open(&msg), Err(NoteError::Malformed(_))), "{msg:?}");
        }
    }

    #[test]
    fn go_key_manglings_are_refused() {
        // Every proper substring and every single-byte bump, as note_test.go tries.
        for key in [PETER_VKEY, PETER_SKEY] {
            let parse = |s: &str| if key == PETER_VKEY { Verifier::parse(s).is_ok() } else { Signer::parse(s).is_ok() };
            assert!(parse(key));
            let b = key.as_bytes();
            for i in 0..=b.len() {
                for j in i + 1..=b.len() {
                    if (i, j) != (0, b.len()) {
                        let s = String::from_utf8_lossy(&b[i..j]);
                        assert!(!parse(&s), "accepted {s:?}");
                    }
                }
            }
            for i in 0..b.len() {
                let mut m = b.to_vec();
                m[i] = m[i].wrapping_add(1);
                let s = String::from_utf8_lossy(&m);
                assert!(!parse(&s), "accepted {s:?}");
            }
        }
        // Go's: a key of the wrong length and an unknown algorithm, each with a matching id.
        assert!(Verifier::parse("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==").is_err());
        assert_eq!(
            Verifier::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
            Err(KeyError::UnknownAlgorithm(0x65))
        );
    }

    #[test]
    fn checkpoints_round_trip_and_name_their_origin() {
        let signer = Signer::generate("audit.example/log").unwrap();
        let v = signer.verifier();
        assert_eq!(Verifier::parse(&v.to_string()).unwrap(), v);
        assert_eq!(Signer::parse(&signer.to_private_key()).unwrap().verifier(), v);
        assert!(!format!("{signer:?}").contains(&signer.to_private_key()[20..]), "Debug shows no secret");
        let cp = Checkpoint { origin: "audit.example/log".into(), size: 0, root: crate::domain::merkle::EMPTY_ROOT };
        let note = cp.sign(&signer).unwrap();
        assert_eq!(
            note.split("\n\n").next().unwrap(),
            "audit.example/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(Checkpoint::open(&note, &v).unwrap(), cp);
        let other = Checkpoint { origin: "elsewhere".into(), ..cp.clone() };
        let foreign = other.sign(&signer).unwrap();
        assert!(matches!(Checkpoint::open(&foreign, &v), Err(NoteError::WrongOrigin { .. })));
        let new_key = Signer::generate("audit.example/log").unwrap();
        assert!(matches!(Checkpoint::open(&cp.sign(&new_key).unwrap(), &v), Err(NoteError::NotSignedByKey { .. })));
        for bad in [
            "o\n01\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
            "o\n1\nAAAA\n",
            "o\n-1\nx\n",
            "\n1\nx\n",
            "o\n1\n",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
        let ext = Checkpoint::parse("o\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nextension\n").unwrap();
        assert_eq!(ext.size, 5);
        assert!(Signer::from_seed("two words", [0; 32]).is_err());
        assert!(signer.sign("no newline").is_err());
    }

    proptest! {
        #[test]
        fn hostile_input_is_refused_not_panicked_on(s in "(\\PC|\n|\u{2014}| |\\+)*", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let v = Verifier::parse(PETER_VKEY).unwrap();
            let lossy = String::from_utf8_lossy(&bytes).into_owned();
            for input in [s.clone(), lossy, format!("{TEXT}\n{s}"), format!("{s}\n\n— PeterNeumann {s}\n")] {
                let _ = Verifier::parse(&input);
                let _ = Signer::parse(&input);
                let _ = Checkpoint::parse(&input);
                prop_assert!(v.open(&input).is_err() || input.starts_with(TEXT));
            }
        }

        #[test]
        fn any_edit_of_a_signed_checkpoint_is_refused(pos in any::<prop::sample::Index>(), byte in 0x20u8..0x7f) {
            let signer = Signer::from_seed("log", [7; 32]).unwrap();
            let cp = Checkpoint { origin: "log".into(), size: 12345, root: [9; 32] };
            let note = cp.sign(&signer).unwrap();
            let mut b = note.clone().into_bytes();
            let i = pos.index(b.len());
            prop_assume!(b[i].is_ascii() && b[i] != byte && b[i] != b'\n');
            b[i] = byte;
            let edited = String::from_utf8(b).unwrap();
            prop_assert!(Checkpoint::open(&edited, &signer.verifier()).is_err());
        }
    }
}
