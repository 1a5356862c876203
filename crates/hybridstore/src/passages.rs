//! Documents reduced to plain-text passages for full-text search.
//!
//! HTML (the page's `<main>`, else `<body>`; parsed with `scraper`/html5ever), Markdown
//! (`pulldown-cmark`) and plain text are cut into blocks (paragraphs, headings, list items,
//! code blocks), and consecutive blocks are packed into passages of at most
//! [`MAX_PASSAGE_CHARS`]; a heading always starts a new passage. Other files have no passages.

use std::path::Path;

use pulldown_cmark::{Event, Parser, TagEnd};
use scraper::{ElementRef, Html, Selector};

/// Longest passage, in characters: about 150 to 200 English words, near the 100-word
/// passages of Dense Passage Retrieval (Karpukhin et al., EMNLP 2020) with room for code.
pub const MAX_PASSAGE_CHARS: usize = 1_000;

/// How a file's text is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// `.html`, `.htm`, `.xhtml`.
    Html,
    /// `.md`, `.markdown`.
    Markdown,
    /// `.txt`.
    Plain,
}

impl TextKind {
    /// The kind of a file by its extension, or `None` for files without searchable text.
    pub fn of(path: &Path) -> Option<TextKind> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "html" | "htm" | "xhtml" => Some(TextKind::Html),
            "md" | "markdown" => Some(TextKind::Markdown),
            "txt" => Some(TextKind::Plain),
            _ => None,
        }
    }
}

/// A block of text and whether it is a heading.
struct Block {
    text: String,
    heading: bool,
}

/// The passages of a document (invalid UTF-8 is replaced, not refused).
pub fn passages(kind: TextKind, bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let blocks = match kind {
        TextKind::Html => html_blocks(&text),
        TextKind::Markdown => markdown_blocks(&text),
        TextKind::Plain => plain_blocks(&text),
    };
    pack(blocks)
}

const BLOCKS: &[&str] = &[
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "p",
    "li",
    "pre",
    "dt",
    "dd",
    "td",
    "th",
    "blockquote",
];

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn html_blocks(html: &str) -> Vec<Block> {
    let doc = Html::parse_document(html);
    let pick = |css: &str| Selector::parse(css).ok();
    let root = pick("main")
        .and_then(|s| doc.select(&s).next())
        .or_else(|| pick("body").and_then(|s| doc.select(&s).next()))
        .unwrap_or_else(|| doc.root_element());
    let Some(blocks) = pick(&BLOCKS.join(",")) else {
        return Vec::new();
    };
    let skip = ["script", "style", "nav", "noscript"];
    let mut out = Vec::new();
    for el in root.select(&blocks) {
        // Only outermost blocks: an <li> holding a <p> is one block, not two.
        let nested = el
            .ancestors()
            .filter_map(ElementRef::wrap)
            .take_while(|a| a.id() != root.id())
            .any(|a| BLOCKS.contains(&a.value().name()) || skip.contains(&a.value().name()));
        if nested {
            continue;
        }
        let text = normalize(&el.text().collect::<String>());
        if !text.is_empty() {
            out.push(Block {
                heading: el.value().name().starts_with('h') && el.value().name().len() == 2,
                text,
            });
        }
    }
    if out.is_empty() {
        // No block elements: the page's text is one block.
        let text = normalize(&root.text().collect::<String>());
        if !text.is_empty() {
            out.push(Block {
                text,
                heading: false,
            });
        }
    }
    out
}

fn markdown_blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current = String::new();
    for event in Parser::new(md) {
        match event {
            Event::Text(t) | Event::Code(t) => current.push_str(&t),
            Event::SoftBreak | Event::HardBreak => current.push(' '),
            Event::End(end) => {
                let heading = matches!(end, TagEnd::Heading(_));
                if matches!(
                    end,
                    TagEnd::Paragraph
                        | TagEnd::Heading(_)
                        | TagEnd::Item
                        | TagEnd::CodeBlock
                        | TagEnd::BlockQuote(_)
                        | TagEnd::TableCell
                ) {
                    let text = normalize(&current);
                    current.clear();
                    if !text.is_empty() {
                        out.push(Block { text, heading });
                    }
                }
            }
            _ => {}
        }
    }
    let text = normalize(&current);
    if !text.is_empty() {
        out.push(Block {
            text,
            heading: false,
        });
    }
    out
}

fn plain_blocks(text: &str) -> Vec<Block> {
    text.split("\n\n")
        .map(normalize)
        .filter(|t| !t.is_empty())
        .map(|text| Block {
            text,
            heading: false,
        })
        .collect()
}

/// Packs blocks into passages of at most [`MAX_PASSAGE_CHARS`] characters (blocks joined by
/// newlines), breaking blocks longer than that at word boundaries.
fn pack(blocks: Vec<Block>) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut current_chars = 0;
    for block in blocks {
        let chars = block.text.chars().count();
        if block.heading || current_chars + 1 + chars > MAX_PASSAGE_CHARS {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            current_chars = 0;
        }
        if chars <= MAX_PASSAGE_CHARS {
            if !current.is_empty() {
                current.push('\n');
                current_chars += 1;
            }
            current.push_str(&block.text);
            current_chars += chars;
            continue;
        }
        // A block longer than a passage: whole words per passage (a word longer than a
        // passage is cut).
        for word in block.text.split(' ') {
            let word: String = word.chars().take(MAX_PASSAGE_CHARS).collect();
            let len = word.chars().count();
            if current_chars > 0 && current_chars + 1 + len > MAX_PASSAGE_CHARS {
                out.push(std::mem::take(&mut current));
                current_chars = 0;
            }
            if current_chars > 0 {
                current.push(' ');
                current_chars += 1;
            }
            current.push_str(&word);
            current_chars += len;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_main_blocks_without_navigation() {
        let html = r#"<html><head><style>p{}</style></head><body>
            <nav><p>Menu item</p></nav>
            <main><h1>Lifetimes</h1><p>The borrow   checker
            compares scopes.</p><ul><li><p>One</p></li><li>Two</li></ul>
            <script>var x = "no";</script></main></body></html>"#;
        let p = passages(TextKind::Html, html.as_bytes());
        assert_eq!(
            p,
            vec!["Lifetimes\nThe borrow checker compares scopes.\nOne\nTwo"]
        );
    }

    #[test]
    fn markdown_headings_start_passages() {
        let md = "# One\n\nFirst *para*.\n\n# Two\n\n- a `code`\n- b\n";
        let p = passages(TextKind::Markdown, md.as_bytes());
        assert_eq!(p, vec!["One\nFirst para.", "Two\na code\nb"]);
    }

    #[test]
    fn long_text_is_cut_at_words_under_the_limit() {
        let text = "word ".repeat(1_000);
        let p = passages(TextKind::Plain, text.as_bytes());
        assert!(p.len() >= 5);
        assert!(p.iter().all(|x| x.chars().count() <= MAX_PASSAGE_CHARS));
        assert!(p.iter().all(|x| x.split_whitespace().all(|w| w == "word")));
        let long_word = "x".repeat(3_000);
        let p = passages(TextKind::Plain, long_word.as_bytes());
        assert_eq!(p[0].chars().count(), MAX_PASSAGE_CHARS);
    }

    #[test]
    fn kinds_by_extension() {
        assert_eq!(TextKind::of(Path::new("a/b.HTML")), Some(TextKind::Html));
        assert_eq!(
            TextKind::of(Path::new("README.md")),
            Some(TextKind::Markdown)
        );
        assert_eq!(TextKind::of(Path::new("logo.png")), None);
        assert_eq!(TextKind::of(Path::new("Makefile")), None);
    }
}
