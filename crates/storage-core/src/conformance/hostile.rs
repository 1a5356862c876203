//! Hostile keys: path traversal in every spelling, absolute paths, NUL and control bytes,
//! percent-encodings, Unicode look-alikes and normalization twins, Windows device names,
//! trailing dots and spaces, invalid UTF-8 and keys of the longest length a store takes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;

use futures::StreamExt;

use super::*;

/// At least 500 distinct hostile keys (as bytes), every one at most `max_len` bytes: the
/// bases below, each alone and combined with hostile prefixes and suffixes, and overlong
/// keys cut to `max_len`. Keys a store must hold apart however a file system, an object
/// store or a URL would read them: a store that maps keys onto paths, objects or URLs must
/// keep them injective and inside its own namespace.
pub fn hostile_keys(max_len: usize) -> Vec<Vec<u8>> {
    let bases: Vec<Vec<u8>> = [
        // Traversal and absolute paths.
        "..",
        ".",
        "../",
        "..\\",
        "../../etc/passwd",
        "..\\..\\windows\\win.ini",
        "a/../b",
        "a/./b",
        "/",
        "//",
        "/etc/passwd",
        "\\",
        "\\\\server\\share",
        "C:\\Windows",
        "C:",
        "c:/x",
        "~",
        "~/.ssh/id_rsa",
        "$HOME",
        "a//b",
        "a/",
        "/a",
        ".../...",
        "....//",
        // Encodings of the same.
        "%2e%2e",
        "%2e%2e%2f",
        "..%2f",
        "%2E%2E%5C",
        "..%5c",
        "%252e%252e%252f",
        "..%c0%af",
        "..%c1%9c",
        "%00",
        "%2f",
        "a%2fb",
        "a%2Fb",
        "+",
        "a b",
        "a+b",
        "?",
        "#",
        "&",
        "=",
        // Unicode look-alikes and normalization twins (each must stay its own key).
        "\u{2024}\u{2024}/",
        "\u{ff0e}\u{ff0e}\u{ff0f}",
        "\u{2215}",
        "\u{2044}",
        "\u{29f8}",
        "\u{fe52}\u{fe52}/",
        "caf\u{e9}",
        "cafe\u{301}",
        "\u{212a}",
        "K",
        "k",
        "\u{3a9}",
        "\u{2126}",
        "\u{df}",
        "ss",
        "SS",
        "\u{130}",
        "i",
        "I",
        "\u{fb01}",
        "fi",
        "\u{200b}",
        "a\u{200b}b",
        "\u{202e}txt.exe",
        "\u{feff}a",
        "\u{1f600}",
        // Windows device names, trailing dots and spaces.
        "con",
        "CON",
        "con.txt",
        "nul",
        "NUL.",
        "aux",
        "prn",
        "com1",
        "COM1.log",
        "lpt1",
        "lpt9",
        "conin$",
        "a.",
        "a..",
        "a...",
        "a ",
        "a  ",
        "a. ",
        " a",
        ". ",
        " ",
        "a:b",
        "a:stream:$DATA",
        "a*",
        "a?",
        "a<b>",
        "a|b",
        "a\"b",
        // Control bytes.
        "\n",
        "\r\n",
        "\t",
        "a\nb",
        "\x1b[31mred",
        "\x7f",
        "\x01",
        "a\x08b",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([
        vec![0],
        vec![0, 0],
        b"a\0b".to_vec(),
        b"a\0".to_vec(),
        b"\0../".to_vec(),
        vec![0xFF],
        vec![0xFE, 0xFF],
        vec![0xC0, 0xAF],
        vec![0xED, 0xA0, 0x80],
        vec![0xF4, 0x90, 0x80, 0x80],
        vec![0x80],
        b"..\xc0\xae/".to_vec(),
    ])
    .collect();
    let prefixes: [&[u8]; 4] = [b"../", b"/", b"%2e%2e/", b"\x00"];
    let suffixes: [&[u8]; 3] = [b"/..", b".", b"/\xff"];
    let mut keys = BTreeSet::new();
    for base in &bases {
        keys.insert(base.clone());
        for p in prefixes {
            keys.insert([p, base].concat());
        }
        for s in suffixes {
            keys.insert([base.as_slice(), s].concat());
        }
    }
    // Overlong: the longest a store takes, in traversal and in multi-byte characters.
    keys.insert(b"../".repeat(max_len).into_iter().take(max_len).collect());
    keys.insert(
        "\u{e9}"
            .repeat(max_len)
            .into_bytes()
            .into_iter()
            .take(max_len)
            .collect(),
    );
    keys.insert(vec![b'a'; max_len]);
    keys.insert(vec![b'.'; max_len]);
    keys.retain(|k| !k.is_empty() && k.len() <= max_len);
    assert!(keys.len() >= 500, "{} hostile keys", keys.len());
    keys.into_iter().collect()
}

/// Every key of [`hostile_keys`] is stored, read back, listed and deleted as its own key:
/// the store's encoding is injective (no two keys collide, none is refused, none comes back
/// changed) and listing returns exactly them, in byte order.
pub async fn hostile_key_names(fx: &Fixture) {
    let store = fx.shared();
    let max = store.capabilities().max_key_len.min(MAX_KEY_LEN);
    let keys = hostile_keys(max);
    let value = |i: usize| Bytes::from(format!("hostile {i}"));
    futures::stream::iter(keys.iter().enumerate())
        .map(|(i, k)| {
            let s = store.clone();
            async move {
                s.put(&key(k), value(i))
                    .await
                    .unwrap_or_else(|e| panic!("put {k:?}: {e}"));
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let listed = scan_keys(store.as_ref(), KeyRange::all(), None).await;
    assert_eq!(
        listed.len(),
        keys.len(),
        "a hostile key collided or vanished"
    );
    assert_eq!(
        listed, keys,
        "listing returns exactly the keys, in byte order"
    );
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            store.get(&key(k)).await.unwrap(),
            Some(value(i)),
            "{k:?} reads back its own value"
        );
    }
    for k in &keys {
        store.delete(&key(k)).await.unwrap();
    }
    assert!(
        scan_keys(store.as_ref(), KeyRange::all(), None)
            .await
            .is_empty()
    );
}
