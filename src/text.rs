//! Character text for language models: the vocabulary (sorted distinct characters, one
//! per embedding row and head output) and tokenization, shared by `gru train`,
//! `gru generate` and embedders, with a streaming reader for texts of any size.

use std::collections::HashMap;
use std::io::Read;

use crate::checkpoint::Checkpoint;
use crate::error::{GruError, Result};
use crate::model::{Head, ModelInput};

/// A language model's characters: a sorted list of distinct single characters, token id
/// = position.
///
/// ```
/// use gru_engine::text::CharVocab;
/// let v = CharVocab::new(vec!["\n".into(), " ".into(), "a".into()]).unwrap();
/// assert_eq!(v.encode("a a").unwrap(), [2, 1, 2]);
/// assert_eq!(v.decode(&[2, 0]), "a\n");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CharVocab {
    tokens: Vec<String>,
    index: HashMap<char, u32>,
}

impl CharVocab {
    /// The vocabulary of `tokens`, checked: each one character, sorted, distinct, and
    /// at least one.
    pub fn new(tokens: Vec<String>) -> Result<Self> {
        if tokens.is_empty() {
            return Err(GruError::Input("an empty vocabulary".into()));
        }
        if let Some(i) = tokens.iter().position(|v| v.chars().count() != 1) {
            return Err(GruError::Input(format!(
                "vocabulary entry {i} is {:?}, not one character",
                tokens[i]
            )));
        }
        if tokens.windows(2).any(|w| w[0] >= w[1]) {
            return Err(GruError::Input(
                "the vocabulary is not a sorted list of distinct characters".into(),
            ));
        }
        Ok(Self::from_sorted(
            tokens.iter().filter_map(|t| t.chars().next()).collect(),
        ))
    }

    /// From characters known to be sorted and distinct.
    fn from_sorted(chars: Vec<char>) -> Self {
        CharVocab {
            index: chars
                .iter()
                .enumerate()
                .map(|(i, &c)| (c, i as u32))
                .collect(),
            tokens: chars.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// The vocabulary of a language-model checkpoint, checked against its model:
    /// token input and a per-step head of as many rows as characters. `name` names the
    /// file in errors.
    pub fn from_checkpoint(c: &Checkpoint, name: &str) -> Result<Self> {
        let bad = |reason: String| GruError::Checkpoint {
            path: name.to_string(),
            reason,
        };
        let tokens = c
            .vocab
            .clone()
            .ok_or_else(|| bad("no vocabulary: not a language-model checkpoint".into()))?;
        let cfg = &c.params.config;
        let fits = matches!(cfg.input, ModelInput::Tokens { vocab: n, .. } if n == tokens.len())
            && cfg.head == Head::EveryStep
            && cfg.outputs == tokens.len();
        if !fits {
            return Err(bad(format!(
                "a vocabulary of {} characters does not fit the model (input {:?}, {} outputs): not a language model",
                tokens.len(),
                cfg.input,
                cfg.outputs
            )));
        }
        Self::new(tokens).map_err(|e| match e {
            GruError::Input(m) => bad(m),
            e => e,
        })
    }

    /// How many characters.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether it has none (never, for a checked vocabulary).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The prompt `gru generate` starts from when given none: a newline if the
    /// vocabulary has one, else its first character.
    pub fn default_prompt(&self) -> String {
        if self.contains('\n') {
            "\n".into()
        } else {
            self.token(0).to_string()
        }
    }

    /// The characters, one string each, by id (as checkpoints store them).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The character of token `id`.
    pub fn token(&self, id: u32) -> &str {
        &self.tokens[id as usize]
    }

    /// Whether `c` is one of the characters.
    pub fn contains(&self, c: char) -> bool {
        self.index.contains_key(&c)
    }

    /// The token ids of `text`, naming the first character not in the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .map(|c| {
                self.index.get(&c).copied().ok_or_else(|| {
                    GruError::Input(format!("character {c:?} is not in the model's vocabulary"))
                })
            })
            .collect()
    }

    /// The text of token ids (ids past the vocabulary are skipped).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .filter_map(|&i| self.tokens.get(i as usize))
            .map(String::as_str)
            .collect()
    }
}

/// A text as token ids.
#[derive(Debug)]
pub struct CharText {
    /// One id a character, into `vocab`.
    pub ids: Vec<u32>,
    /// The sorted distinct characters (or the vocabulary given).
    pub vocab: CharVocab,
    /// The first characters, for the end-of-run sample's prompt.
    pub head: String,
}

/// Bytes read at a time.
const CHUNK: usize = 1 << 20;

/// Reads `source` (named `name` in errors; `size_hint` bytes, if known) as UTF-8 text,
/// in one streaming pass at 4 bytes a character. With `vocab`, every character must be
/// in it (a resumed model's); without, the vocabulary is the text's own characters,
/// sorted. `stop` is asked between chunks (1 MiB): `Ok(None)` when it says stop (Ctrl-C
/// in the CLI).
///
/// ```
/// use gru_engine::text::read_chars;
/// let t = read_chars("abca".as_bytes(), "text", 4, None, &|| false).unwrap().unwrap();
/// assert_eq!((t.ids, t.vocab.len(), t.head.as_str()), (vec![0, 1, 2, 0], 3, "abc"));
/// ```
pub fn read_chars(
    mut source: impl Read,
    name: &str,
    size_hint: u64,
    vocab: Option<&CharVocab>,
    stop: &dyn Fn() -> bool,
) -> Result<Option<CharText>> {
    let io = |e: std::io::Error| GruError::Io {
        path: name.to_string(),
        source: e,
    };
    // A character's id: fixed by the given vocabulary, else by first appearance (made
    // sorted at the end).
    let fixed = vocab.map(|v| &v.index);
    let mut seen: Vec<char> = Vec::new();
    let mut ascii = [u32::MAX; 128];
    let mut other: HashMap<char, u32> = HashMap::new();
    let mut ids: Vec<u32> = crate::memory::try_with_capacity(
        size_hint.min(usize::MAX as u64) as usize,
        "the text's token ids",
    )?;
    let mut head = String::new();
    let mut buf = vec![0u8; CHUNK + 4];
    let (mut carry, mut offset) = (0usize, 0u64);
    loop {
        if stop() {
            return Ok(None);
        }
        let n = match source.read(&mut buf[carry..carry + CHUNK]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        let end = carry + n;
        let (text, rest) = match std::str::from_utf8(&buf[..end]) {
            Ok(t) => (t, 0),
            // An incomplete character at the end of the chunk waits for the next one.
            Err(e) if e.error_len().is_none() && n > 0 => {
                let valid = e.valid_up_to();
                // SAFETY-free: the prefix was just validated.
                (
                    std::str::from_utf8(&buf[..valid]).unwrap_or(""),
                    end - valid,
                )
            }
            Err(e) => {
                return Err(GruError::Input(format!(
                    "{name} is not UTF-8 text (invalid byte at offset {})",
                    offset + e.valid_up_to() as u64
                )))
            }
        };
        for c in text.chars() {
            if head.chars().count() < 3 {
                head.push(c);
            }
            let id = match fixed {
                Some(map) => *map.get(&c).ok_or_else(|| {
                    GruError::Input(format!(
                        "{name}: character {c:?} is not in the model's vocabulary"
                    ))
                })?,
                None => {
                    let slot = if (c as u32) < 128 {
                        &mut ascii[c as usize]
                    } else {
                        other.entry(c).or_insert(u32::MAX)
                    };
                    if *slot == u32::MAX {
                        *slot = seen.len() as u32;
                        seen.push(c);
                    }
                    *slot
                }
            };
            if ids.len() == ids.capacity() {
                ids.try_reserve(ids.len().max(CHUNK)).map_err(|_| {
                    GruError::Input(format!("{name}: too many characters to hold as token ids"))
                })?;
            }
            ids.push(id);
        }
        offset += (end - rest) as u64;
        if n == 0 {
            break;
        }
        buf.copy_within(end - rest..end, 0);
        carry = rest;
    }
    if ids.is_empty() {
        return Err(GruError::Input(format!("{name} is empty")));
    }
    let vocab = match vocab {
        Some(v) => v.clone(),
        None => {
            // First-appearance ids to sorted ones.
            let mut order: Vec<u32> = (0..seen.len() as u32).collect();
            order.sort_by_key(|&i| seen[i as usize]);
            let mut rank = vec![0u32; seen.len()];
            for (sorted, &i) in order.iter().enumerate() {
                rank[i as usize] = sorted as u32;
            }
            for id in ids.iter_mut() {
                *id = rank[*id as usize];
            }
            CharVocab::from_sorted(order.iter().map(|&i| seen[i as usize]).collect())
        }
    };
    Ok(Some(CharText { ids, vocab, head }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8], vocab: Option<&CharVocab>) -> Result<CharText> {
        Ok(read_chars(text, "t", 0, vocab, &|| false)?.unwrap())
    }

    #[test]
    fn ids_index_the_sorted_characters_across_chunks() {
        // Multi-byte characters straddle the chunk boundary.
        let mut s = "é".repeat(CHUNK / 2 + 1);
        s.push_str("ba€a");
        let t = read(s.as_bytes(), None).unwrap();
        assert_eq!(t.vocab.tokens(), ["a", "b", "é", "€"]);
        let want: Vec<u32> = s
            .chars()
            .map(|c| {
                t.vocab
                    .tokens()
                    .iter()
                    .position(|v| *v == c.to_string())
                    .unwrap() as u32
            })
            .collect();
        assert_eq!(t.ids, want);
        assert_eq!(t.head, "ééé");
        let fixed = CharVocab::new(vec!["a".into(), "b".into(), "z".into()]).unwrap();
        assert_eq!(read(b"bza", Some(&fixed)).unwrap().ids, [1, 2, 0]);
        assert_eq!(fixed.encode("zab").unwrap(), [2, 0, 1]);
        assert_eq!(fixed.token(2), "z");
        let e = fixed.encode("zq").unwrap_err().to_string();
        assert!(
            e.contains("character 'q' is not in the model's vocabulary"),
            "{e}"
        );
        for bad in [vec!["b".to_string(), "a".into()], vec!["ab".into()], vec![]] {
            assert!(CharVocab::new(bad).is_err());
        }
        let e = read(b"bzq", Some(&fixed)).unwrap_err().to_string();
        assert!(e.contains("'q' is not in the model's vocabulary"), "{e}");
        assert!(read_chars(&b"abc"[..], "t", 3, None, &|| true)
            .unwrap()
            .is_none());
        let e = read(b"ab\xffc", None).unwrap_err().to_string();
        assert!(e.contains("invalid byte at offset 2"), "{e}");
        let e = read(b"ab\xc3", None).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        assert!(read(b"", None).unwrap_err().to_string().contains("empty"));
    }
}
