//! A character-level lexer for the text form, with line numbers in every error.
use std::fmt;

/// A parse error with the 1-based line where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// Cursor over the source text; every method skips leading whitespace and `;` comments.
pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Lexer<'a> {
        Lexer { src, pos: 0 }
    }

    pub fn line(&self) -> usize {
        self.src[..self.pos].matches('\n').count() + 1
    }

    pub fn error(&self, msg: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line(),
            msg: msg.into(),
        }
    }

    fn skip_ws(&mut self) {
        loop {
            let rest = &self.src[self.pos..];
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if trimmed.starts_with(';') {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else {
                return;
            }
        }
    }

    /// The next non-space character, not consumed.
    pub fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.src[self.pos..].chars().next()
    }

    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Consumes `c` if it is next.
    pub fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, c: char) -> Result<(), ParseError> {
        if self.eat(c) {
            Ok(())
        } else {
            let found = self
                .peek()
                .map_or("end of input".to_string(), |f| format!("`{f}`"));
            Err(self.error(format!("expected `{c}`, found {found}")))
        }
    }

    /// Consumes the identifier `w` if it is next (as a whole word).
    pub fn eat_word(&mut self, w: &str) -> bool {
        self.skip_ws();
        let rest = &self.src[self.pos..];
        if rest.starts_with(w)
            && !rest[w.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        {
            self.pos += w.len();
            true
        } else {
            false
        }
    }

    /// An identifier: letters, digits, `_` (not starting with a digit).
    pub fn ident(&mut self) -> Result<String, ParseError> {
        self.skip_ws();
        let rest = &self.src[self.pos..];
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(self.error("expected an identifier"));
        }
        self.pos += len;
        Ok(rest[..len].to_string())
    }

    fn number_token(&mut self) -> &'a str {
        self.skip_ws();
        let rest = &self.src[self.pos..];
        let mut len = 0;
        let b = rest.as_bytes();
        while len < b.len() {
            let c = b[len] as char;
            let sign_ok = (c == '-' || c == '+') && (len == 0 || matches!(b[len - 1], b'e' | b'E'));
            if c.is_ascii_alphanumeric() || c == '.' || sign_ok {
                len += 1;
            } else {
                break;
            }
        }
        self.pos += len;
        &rest[..len]
    }

    /// The raw text of a number-like token (digits, letters, `.`, exponent signs).
    pub fn float_token(&mut self) -> Result<String, ParseError> {
        let t = self.number_token();
        if t.is_empty() {
            Err(self.error("expected a number"))
        } else {
            Ok(t.to_string())
        }
    }

    /// A decimal integer.
    pub fn int(&mut self) -> Result<i64, ParseError> {
        let t = self.number_token();
        t.parse()
            .map_err(|_| self.error(format!("expected an integer, found `{t}`")))
    }

    /// An unsigned decimal integer.
    pub fn uint(&mut self) -> Result<u64, ParseError> {
        let t = self.number_token();
        t.parse()
            .map_err(|_| self.error(format!("expected an unsigned integer, found `{t}`")))
    }

    /// A float (`1.5`, `-2e-3`, `inf`, `-inf`, `nan`).
    pub fn float(&mut self) -> Result<f64, ParseError> {
        let t = self.number_token();
        match t {
            "nan" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            _ => t
                .parse()
                .map_err(|_| self.error(format!("expected a number, found `{t}`"))),
        }
    }

    /// A double-quoted string with `\"`, `\\`, `\n` and `\xHH` escapes that must be UTF-8.
    pub fn string(&mut self) -> Result<String, ParseError> {
        let b = self.byte_string()?;
        String::from_utf8(b).map_err(|_| self.error("the string is not UTF-8"))
    }

    /// A double-quoted byte string: text as UTF-8, `\"`, `\\`, `\n`, and `\xHH` for any byte.
    pub fn byte_string(&mut self) -> Result<Vec<u8>, ParseError> {
        self.expect('"')?;
        let mut out = Vec::new();
        let mut chars = self.src[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e as u8),
                    Some((_, 'n')) => out.push(b'\n'),
                    Some((_, 'x')) => {
                        let hex: String = chars.by_ref().take(2).map(|(_, h)| h).collect();
                        if hex.len() != 2 || !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                            return Err(self.error("bad \\x escape in string"));
                        }
                        out.push(u8::from_str_radix(&hex, 16).expect("two hex digits"));
                    }
                    _ => return Err(self.error("bad escape in string")),
                },
                c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        Err(self.error("unterminated string"))
    }
}
