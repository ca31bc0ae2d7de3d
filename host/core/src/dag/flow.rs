//! Airflow-style dependency expressions: `"extract >> [train, baseline] >> evaluate"`.
//!
//! People coming from Airflow write dependencies this way, and one line shows a pipeline's shape
//! better than `upstream` lists scattered over task tables. The grammar is small:
//!
//! ```text
//! expression = group { ( ">>" | "<<" ) group }
//! group      = name | "[" name { "," name } [ "," ] "]"
//! name       = 1*( ALPHA / DIGIT / "_" / "." / "-" )
//! ```
//!
//! `l >> r` makes every task of `l` upstream of every task of `r`; `l << r` the reverse. Operators
//! chain left to right on adjacent groups, as in Airflow: `a >> b << c` is `a >> b` and `c >> b`.
//! This module only parses; checking that names are tasks is the caller's job. Positions are byte
//! offsets in the expression, so the caller can point at the exact name or arrow.

/// A task name in an expression, with its byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Name<'e> {
    pub(super) text: &'e str,
    pub(super) offset: usize,
}

/// One dependency: `upstream` runs before `downstream`; `arrow` is the offset of its operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Edge<'e> {
    pub(super) upstream: Name<'e>,
    pub(super) downstream: Name<'e>,
    pub(super) arrow: usize,
}

/// Why an expression does not parse, and where (byte offset in the expression).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub(super) struct FlowError {
    pub(super) offset: usize,
    pub(super) kind: FlowErrorKind,
}

/// The kinds of [`FlowError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FlowErrorKind {
    #[error("empty flow expression, expected something like \"a >> b\"")]
    Empty,
    #[error("unexpected character {0:?}{hint}", hint = arrow_hint(*.0))]
    UnexpectedChar(char),
    #[error("expected a task name or \"[\", found {0}")]
    ExpectedGroup(&'static str),
    #[error("expected a task name, found {0}")]
    ExpectedName(&'static str),
    #[error("expected \">>\" or \"<<\", found {0}")]
    ExpectedArrow(&'static str),
    #[error("expected \",\" or \"]\", found {0}")]
    ExpectedCommaOrClose(&'static str),
    #[error("unclosed \"[\"")]
    Unclosed,
    #[error("empty list \"[]\"")]
    EmptyList,
}

/// A hint for a lone `>` or `<`.
fn arrow_hint(c: char) -> &'static str {
    if matches!(c, '>' | '<') {
        " (arrows are \">>\" and \"<<\")"
    } else {
        ""
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'e> {
    Name(&'e str),
    Downstream,
    Upstream,
    Open,
    Close,
    Comma,
    End,
}

impl Token<'_> {
    fn describe(self) -> &'static str {
        match self {
            Token::Name(_) => "a task name",
            Token::Downstream => "\">>\"",
            Token::Upstream => "\"<<\"",
            Token::Open => "\"[\"",
            Token::Close => "\"]\"",
            Token::Comma => "\",\"",
            Token::End => "the end of the expression",
        }
    }
}

/// Whether `c` may appear in a task id.
pub(super) fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Parses one expression into its edges, in the order written.
pub(super) fn parse(expression: &str) -> Result<Vec<Edge<'_>>, FlowError> {
    let tokens = tokenize(expression)?;
    Parser { tokens, next: 0 }.expression()
}

fn tokenize(expression: &str) -> Result<Vec<(Token<'_>, usize)>, FlowError> {
    let mut tokens = Vec::new();
    let mut rest = expression.char_indices().peekable();
    while let Some((offset, c)) = rest.next() {
        let token = match c {
            c if c.is_whitespace() => continue,
            '[' => Token::Open,
            ']' => Token::Close,
            ',' => Token::Comma,
            '>' | '<' if rest.next_if(|&(_, next)| next == c).is_some() => {
                if c == '>' {
                    Token::Downstream
                } else {
                    Token::Upstream
                }
            }
            c if is_id_char(c) => {
                let mut end = offset + c.len_utf8();
                while let Some((at, next)) = rest.next_if(|&(_, next)| is_id_char(next)) {
                    end = at + next.len_utf8();
                }
                Token::Name(&expression[offset..end])
            }
            c => return Err(FlowError { offset, kind: FlowErrorKind::UnexpectedChar(c) }),
        };
        tokens.push((token, offset));
    }
    tokens.push((Token::End, expression.len()));
    Ok(tokens)
}

struct Parser<'e> {
    tokens: Vec<(Token<'e>, usize)>,
    next: usize,
}

impl<'e> Parser<'e> {
    fn bump(&mut self) -> (Token<'e>, usize) {
        let token = self.tokens.get(self.next).copied().unwrap_or((Token::End, 0));
        self.next += 1;
        token
    }

    fn expression(mut self) -> Result<Vec<Edge<'e>>, FlowError> {
        if self.tokens.first().is_some_and(|&(token, _)| token == Token::End) {
            return Err(FlowError { offset: 0, kind: FlowErrorKind::Empty });
        }
        let mut edges = Vec::new();
        let mut left = self.group()?;
        loop {
            let (token, arrow) = self.bump();
            let downstream = match token {
                Token::End => return Ok(edges),
                Token::Downstream => true,
                Token::Upstream => false,
                other => {
                    let kind = FlowErrorKind::ExpectedArrow(other.describe());
                    return Err(FlowError { offset: arrow, kind });
                }
            };
            let right = self.group()?;
            let (ups, downs) = if downstream { (&left, &right) } else { (&right, &left) };
            for &upstream in ups {
                edges.extend(downs.iter().map(|&downstream| Edge { upstream, downstream, arrow }));
            }
            left = right;
        }
    }

    fn group(&mut self) -> Result<Vec<Name<'e>>, FlowError> {
        match self.bump() {
            (Token::Name(text), offset) => Ok(vec![Name { text, offset }]),
            (Token::Open, offset) => self.list(offset),
            (other, offset) => Err(FlowError { offset, kind: FlowErrorKind::ExpectedGroup(other.describe()) }),
        }
    }

    /// The rest of a list whose `[` is at `open`.
    fn list(&mut self, open: usize) -> Result<Vec<Name<'e>>, FlowError> {
        let mut names = Vec::new();
        loop {
            match self.bump() {
                (Token::Name(text), offset) => names.push(Name { text, offset }),
                (Token::Close, offset) if names.is_empty() => {
                    return Err(FlowError { offset, kind: FlowErrorKind::EmptyList })
                }
                (Token::Close, _) => return Ok(names),
                (Token::End | Token::Downstream | Token::Upstream, _) => {
                    return Err(FlowError { offset: open, kind: FlowErrorKind::Unclosed })
                }
                (other, offset) => {
                    return Err(FlowError { offset, kind: FlowErrorKind::ExpectedName(other.describe()) })
                }
            }
            match self.bump() {
                (Token::Comma, _) => {}
                (Token::Close, _) => return Ok(names),
                (Token::End | Token::Downstream | Token::Upstream, _) => {
                    return Err(FlowError { offset: open, kind: FlowErrorKind::Unclosed })
                }
                (other, offset) => {
                    let kind = FlowErrorKind::ExpectedCommaOrClose(other.describe());
                    return Err(FlowError { offset, kind });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The edges of an expression as `"up>down"` strings.
    fn edges(expression: &str) -> Vec<String> {
        let edges = parse(expression).unwrap_or_else(|e| panic!("{expression:?}: {e}"));
        edges.iter().map(|e| format!("{}>{}", e.upstream.text, e.downstream.text)).collect()
    }

    fn error(expression: &str) -> (usize, String) {
        match parse(expression) {
            Ok(edges) => panic!("{expression:?} parsed: {edges:?}"),
            Err(error) => (error.offset, error.to_string()),
        }
    }

    #[test]
    fn a_chain() {
        assert_eq!(edges("a >> b >> c"), ["a>b", "b>c"]);
        assert_eq!(edges("a>>b"), ["a>b"]);
    }

    #[test]
    fn fan_out_and_in() {
        assert_eq!(edges("a >> [b, c] >> d"), ["a>b", "a>c", "b>d", "c>d"]);
    }

    #[test]
    fn upstream_arrow() {
        assert_eq!(edges("d << c"), ["c>d"]);
        assert_eq!(edges("d << [b, c] << a"), ["b>d", "c>d", "a>b", "a>c"]);
    }

    #[test]
    fn arrows_chain_on_adjacent_groups() {
        assert_eq!(edges("a >> b << c"), ["a>b", "c>b"]);
    }

    #[test]
    fn lists_on_both_sides() {
        assert_eq!(edges("[a, b] >> [c, d]"), ["a>c", "a>d", "b>c", "b>d"]);
        assert_eq!(edges("[a, b,] >> c"), ["a>c", "b>c"]);
    }

    #[test]
    fn a_lone_name_declares_nothing() {
        assert!(edges("a").is_empty());
        assert_eq!(parse("  a").map(|e| e.len()), Ok(0));
    }

    #[test]
    fn ids_with_dots_and_dashes() {
        assert_eq!(edges("load.v2 >> clean-up_1"), ["load.v2>clean-up_1"]);
    }

    #[test]
    fn positions() {
        let parsed = parse("ab >> [c, de]").expect("valid");
        assert_eq!(parsed[1].upstream, Name { text: "ab", offset: 0 });
        assert_eq!(parsed[1].downstream, Name { text: "de", offset: 10 });
        assert_eq!(parsed[1].arrow, 3);
    }

    #[test]
    fn errors() {
        assert_eq!(error("a >> >> b"), (5, "expected a task name or \"[\", found \">>\"".into()));
        assert_eq!(error("a >> [b, c"), (5, "unclosed \"[\"".into()));
        assert_eq!(error("[a, b >> c"), (0, "unclosed \"[\"".into()));
        assert_eq!(error("a >> b]"), (6, "expected \">>\" or \"<<\", found \"]\"".into()));
        assert_eq!(error("a b"), (2, "expected \">>\" or \"<<\", found a task name".into()));
        assert_eq!(error("a >>"), (4, "expected a task name or \"[\", found the end of the expression".into()));
        assert_eq!(error("a >> []"), (6, "empty list \"[]\"".into()));
        assert_eq!(error("a >> [b [c]]"), (8, "expected \",\" or \"]\", found \"[\"".into()));
        assert_eq!(error("a >> [, b]"), (6, "expected a task name, found \",\"".into()));
        assert_eq!(error(" "), (0, "empty flow expression, expected something like \"a >> b\"".into()));
        assert_eq!(error("a > b"), (2, "unexpected character '>' (arrows are \">>\" and \"<<\")".into()));
        assert_eq!(error("a -> b"), (3, "unexpected character '>' (arrows are \">>\" and \"<<\")".into()));
        assert_eq!(error("a >> b c"), (7, "expected \">>\" or \"<<\", found a task name".into()));
    }
}
