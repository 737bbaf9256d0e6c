//! A small delimited-text reader of our own (RFC 4180 subset): the MovieLens CSV files and the
//! tab-separated RecBole atomic files.
//!
//! MovieLens titles contain commas and quotes (`"American President, The (1995)"`,
//! `"""Great Performances"" Cats (1998)"`), so splitting on ',' is wrong. This reader handles
//! quoted fields, doubled quotes inside them, quoted line breaks, `\r\n` endings and a leading
//! UTF-8 byte-order mark, and reports the line on which each record starts so that errors can
//! point at it.
//!
//! The two files differ in one rule, kept in a [`Dialect`]: MovieLens CSV is strict (a quote
//! inside an unquoted field is an error: the file is not the CSV we think it is), while RecBole
//! files are read the way pandas reads them for RecBole: a field that *starts* with a quote is
//! quoted (it may then hold tabs and line breaks), any other quote is an ordinary character
//! (Amazon descriptions are full of them: `["12\" ruler"]`).

/// One parsed record: the 1-based line it starts on, and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvRecord {
    pub line: usize,
    pub fields: Vec<String>,
}

/// The separator and the quoting rule of a file kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: u8,
    /// A quote inside an unquoted field is an error (true) or an ordinary character (false).
    pub strict_quotes: bool,
}

/// MovieLens: comma-separated, strict quoting.
pub const CSV: Dialect = Dialect {
    delimiter: b',',
    strict_quotes: true,
};

/// RecBole atomic files: tab-separated, a quote only opens a field at its start.
pub const ATOMIC_TSV: Dialect = Dialect {
    delimiter: b'\t',
    strict_quotes: false,
};

/// Iterates the records of a CSV text. Errors are plain messages ("line 7: ..."); the caller
/// adds the file name.
pub struct CsvReader<'a> {
    text: &'a str,
    dialect: Dialect,
    /// Byte offset of the next unread character.
    pos: usize,
    /// 1-based line number at `pos`.
    line: usize,
}

impl<'a> CsvReader<'a> {
    /// A reader of comma-separated text ([`CSV`]).
    pub fn new(text: &'a str) -> CsvReader<'a> {
        CsvReader::with_dialect(text, CSV)
    }

    pub fn with_dialect(text: &'a str, dialect: Dialect) -> CsvReader<'a> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        CsvReader {
            text,
            dialect,
            pos: 0,
            line: 1,
        }
    }

    /// The next record, `None` at the end. Blank lines are skipped (a trailing newline at the
    /// end of a file is common and carries no record).
    pub fn next_record(&mut self) -> Option<Result<CsvRecord, String>> {
        self.skip_blank_lines();
        if self.pos >= self.text.len() {
            return None;
        }
        Some(self.read_record())
    }

    fn skip_blank_lines(&mut self) {
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() {
            match bytes[self.pos] {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                }
                b'\r' if bytes.get(self.pos + 1) == Some(&b'\n') => {
                    self.pos += 2;
                    self.line += 1;
                }
                _ => break,
            }
        }
    }

    fn read_record(&mut self) -> Result<CsvRecord, String> {
        let start_line = self.line;
        let mut fields = Vec::new();
        loop {
            let field = if self.text.as_bytes().get(self.pos) == Some(&b'"') {
                self.read_quoted(start_line)?
            } else {
                self.read_unquoted()?
            };
            fields.push(field);
            // After a field: the delimiter continues the record, a line end or the end of text
            // closes it.
            match self.text.as_bytes().get(self.pos) {
                Some(&d) if d == self.dialect.delimiter => self.pos += 1,
                Some(b'\r') | Some(b'\n') | None => {
                    self.consume_line_end();
                    return Ok(CsvRecord { line: start_line, fields });
                }
                Some(_) => {
                    return Err(format!(
                        "line {}, field {}: unexpected character after a closing quote (expected {} or end of line)",
                        self.line,
                        fields.len(),
                        self.delimiter_name()
                    ))
                }
            }
        }
    }

    /// An unquoted field runs to the next delimiter or line end; in a strict dialect a quote
    /// inside it is an error (it almost always means the file is not the CSV we think it is).
    fn read_unquoted(&mut self) -> Result<String, String> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        while self.pos < bytes.len() {
            match bytes[self.pos] {
                b'\n' => break,
                d if d == self.dialect.delimiter => break,
                b'\r' if bytes.get(self.pos + 1) == Some(&b'\n') => break,
                b'"' if self.dialect.strict_quotes => {
                    return Err(format!(
                        "line {}: stray '\"' inside an unquoted field (quote the whole field and double inner quotes)",
                        self.line
                    ))
                }
                _ => self.pos += 1,
            }
        }
        Ok(self.text[start..self.pos].to_string())
    }

    /// A quoted field: `""` stands for one quote; commas and line breaks are literal.
    fn read_quoted(&mut self, start_line: usize) -> Result<String, String> {
        let bytes = self.text.as_bytes();
        self.pos += 1; // opening quote
        let mut value = String::new();
        let mut chunk_start = self.pos;
        while self.pos < bytes.len() {
            match bytes[self.pos] {
                b'"' if bytes.get(self.pos + 1) == Some(&b'"') => {
                    value.push_str(&self.text[chunk_start..=self.pos]);
                    self.pos += 2;
                    chunk_start = self.pos;
                }
                b'"' => {
                    value.push_str(&self.text[chunk_start..self.pos]);
                    self.pos += 1; // closing quote
                    return Ok(value);
                }
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
        Err(format!(
            "line {start_line}: quoted field is never closed (missing '\"')"
        ))
    }

    fn delimiter_name(&self) -> &'static str {
        match self.dialect.delimiter {
            b'\t' => "a tab",
            b',' => "','",
            _ => "the delimiter",
        }
    }

    fn consume_line_end(&mut self) {
        let bytes = self.text.as_bytes();
        if bytes.get(self.pos) == Some(&b'\r') && bytes.get(self.pos + 1) == Some(&b'\n') {
            self.pos += 2;
            self.line += 1;
        } else if bytes.get(self.pos) == Some(&b'\n') {
            self.pos += 1;
            self.line += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<(usize, Vec<&'static str>)> {
        let mut r = CsvReader::new(text);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record() {
            let rec = rec.unwrap();
            let fields = rec
                .fields
                .into_iter()
                .map(|f| &*Box::leak(f.into_boxed_str()))
                .collect();
            out.push((rec.line, fields));
        }
        out
    }

    #[test]
    fn quoted_commas_and_doubled_quotes() {
        let text = "id,title\n11,\"American President, The (1995)\"\n51372,\"\"\"Great Performances\"\" Cats (1998)\"\n";
        assert_eq!(
            all(text),
            vec![
                (1, vec!["id", "title"]),
                (2, vec!["11", "American President, The (1995)"]),
                (3, vec!["51372", "\"Great Performances\" Cats (1998)"]),
            ]
        );
    }

    #[test]
    fn crlf_bom_empty_fields_and_multiline() {
        let text = "\u{feff}a,b,c\r\n1,,3\r\n\r\n\"x\ny\",2,\r\n4,5,6";
        assert_eq!(
            all(text),
            vec![
                (1, vec!["a", "b", "c"]),
                (2, vec!["1", "", "3"]),
                (4, vec!["x\ny", "2", ""]),
                (6, vec!["4", "5", "6"]),
            ]
        );
    }

    #[test]
    fn malformed_quotes_are_errors_with_lines() {
        let mut r = CsvReader::new("a\n\"open,1\n2\n");
        r.next_record().unwrap().unwrap();
        let e = r.next_record().unwrap().unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let mut r = CsvReader::new("a\nab\"c,1\n");
        r.next_record().unwrap().unwrap();
        assert!(r.next_record().unwrap().unwrap_err().starts_with("line 2:"));
        let mut r = CsvReader::new("\"a\"b,1\n");
        assert!(r
            .next_record()
            .unwrap()
            .unwrap_err()
            .starts_with("line 1, field 1:"));
    }

    #[test]
    fn tab_dialect_quotes_only_at_the_start_of_a_field() {
        let mut r = CsvReader::with_dialect(
            "a\tb\r\n12\" ruler\t[\"x\"]\n\"tab\there\"\t\"say \"\"hi\"\"\"\n",
            ATOMIC_TSV,
        );
        let mut next = || r.next_record().unwrap().unwrap();
        assert_eq!(next().fields, vec!["a", "b"]);
        assert_eq!(next().fields, vec!["12\" ruler", "[\"x\"]"]);
        let quoted = next();
        assert_eq!(
            (quoted.line, quoted.fields),
            (3, vec!["tab\there".to_string(), "say \"hi\"".into()])
        );
        assert!(r.next_record().is_none());
        // A quoted field must end at a tab or a line end.
        let mut r = CsvReader::with_dialect("x\t\"a\"b\n", ATOMIC_TSV);
        let e = r.next_record().unwrap().unwrap_err();
        assert!(
            e.starts_with("line 1, field 2:") && e.contains("a tab"),
            "{e}"
        );
    }
}
