//! A character text read for a language model in one streaming pass: its vocabulary
//! (the sorted distinct characters, or a checkpoint's) and its token ids, in memory of
//! four bytes a character, with Ctrl-C and SIGTERM checked as it reads.

use std::collections::HashMap;
use std::io::Read;
use std::time::Instant;

use gru_engine::{GruError, Result};

use crate::cli::signals::interrupted;

/// A text as token ids.
#[derive(Debug)]
pub struct CharText {
    /// One id a character, into `vocab`.
    pub ids: Vec<u32>,
    /// The sorted distinct characters (or the checkpoint's vocabulary).
    pub vocab: Vec<String>,
    /// The first characters, for the end-of-run sample's prompt.
    pub head: String,
    /// Seconds the reading took.
    pub seconds: f64,
}

/// Bytes read at a time.
const CHUNK: usize = 1 << 20;

/// Reads `source` (named `name` in errors; `size_hint` bytes, if known) as UTF-8 text.
/// With `vocab`, every character must be in it (a resumed model's); without, the
/// vocabulary is the text's own characters, sorted. `Ok(None)` when Ctrl-C or SIGTERM
/// arrived while reading.
pub fn read_chars(
    mut source: impl Read,
    name: &str,
    size_hint: u64,
    vocab: Option<&[String]>,
) -> Result<Option<CharText>> {
    let start = Instant::now();
    let io = |e: std::io::Error| GruError::Io {
        path: name.to_string(),
        source: e,
    };
    // A character's id: fixed by the given vocabulary, else by first appearance (made
    // sorted at the end).
    let fixed: Option<HashMap<char, u32>> = vocab.map(|v| {
        v.iter()
            .enumerate()
            .filter_map(|(i, s)| Some((s.chars().next()?, i as u32)))
            .collect()
    });
    let mut seen: Vec<char> = Vec::new();
    let mut ascii = [u32::MAX; 128];
    let mut other: HashMap<char, u32> = HashMap::new();
    let mut ids: Vec<u32> = gru_engine::budget::try_with_capacity(
        size_hint.min(usize::MAX as u64) as usize,
        "the text's token ids",
    )?;
    let mut head = String::new();
    let mut buf = vec![0u8; CHUNK + 4];
    let (mut carry, mut offset) = (0usize, 0u64);
    loop {
        if interrupted() {
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
            let id = match &fixed {
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
        Some(v) => v.to_vec(),
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
            order
                .iter()
                .map(|&i| seen[i as usize].to_string())
                .collect()
        }
    };
    Ok(Some(CharText {
        ids,
        vocab,
        head,
        seconds: start.elapsed().as_secs_f64(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8], vocab: Option<&[String]>) -> Result<CharText> {
        Ok(read_chars(text, "t", 0, vocab)?.unwrap())
    }

    #[test]
    fn ids_index_the_sorted_characters_across_chunks() {
        // Multi-byte characters straddle the chunk boundary.
        let mut s = "é".repeat(CHUNK / 2 + 1);
        s.push_str("ba€a");
        let t = read(s.as_bytes(), None).unwrap();
        assert_eq!(t.vocab, ["a", "b", "é", "€"]);
        let want: Vec<u32> = s
            .chars()
            .map(|c| t.vocab.iter().position(|v| *v == c.to_string()).unwrap() as u32)
            .collect();
        assert_eq!(t.ids, want);
        assert_eq!(t.head, "ééé");
        let fixed = ["a".to_string(), "b".into(), "z".into()];
        assert_eq!(read(b"bza", Some(&fixed)).unwrap().ids, [1, 2, 0]);
        let e = read(b"bzq", Some(&fixed)).unwrap_err().to_string();
        assert!(e.contains("'q' is not in the model's vocabulary"), "{e}");
        let e = read(b"ab\xffc", None).unwrap_err().to_string();
        assert!(e.contains("invalid byte at offset 2"), "{e}");
        let e = read(b"ab\xc3", None).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        assert!(read(b"", None).unwrap_err().to_string().contains("empty"));
    }
}
