//! Aligned plain-text tables and `key  value` blocks for human output.

use std::fmt;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table: a header row and rows of cells, printed with columns two spaces
/// apart and no trailing spaces.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles, all left-aligned.
    pub(crate) fn new<const N: usize>(header: [&str; N]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            align: vec![Align::Left; N],
            rows: Vec::new(),
        }
    }

    /// Right-aligns the named columns (for numbers).
    pub(crate) fn right(mut self, columns: &[usize]) -> Self {
        for &c in columns {
            if let Some(a) = self.align.get_mut(c) {
                *a = Align::Right;
            }
        }
        self
    }

    /// Adds a row; missing cells print empty, extra cells are dropped.
    pub(crate) fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.header.len())
            .map(|c| sanitize(&c.into()))
            .collect();
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// Rows (the header not counted).
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                std::iter::once(&self.header[c])
                    .chain(self.rows.iter().map(|r| &r[c]))
                    .map(|cell| width(cell))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            writeln!(f, "{}", line(row, &widths, &self.align))?;
        }
        Ok(())
    }
}

fn line(row: &[String], widths: &[usize], align: &[Align]) -> String {
    let mut out = String::new();
    for (c, cell) in row.iter().enumerate() {
        if c > 0 {
            out.push_str("  ");
        }
        let pad = widths[c].saturating_sub(width(cell));
        match align[c] {
            Align::Left => {
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
            Align::Right => {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            }
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// Display width in characters (good enough for the ASCII and `…` we print).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Cells are one line: control characters (newlines, escapes from a node's
/// strings) become spaces so they cannot break the layout or the terminal.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `key  value` lines with the values aligned.
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let key_width = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let value = sanitize(value);
        let line = format!("{key:<key_width$}  {value}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_have_no_trailing_spaces() {
        let mut t = Table::new(["NAME", "COUNT", "NOTE"]).right(&[1]);
        t.row(["a", "1", "x"]);
        t.row(["longer", "100", ""]);
        assert_eq!(
            t.to_string(),
            "NAME    COUNT  NOTE\n\
             a           1  x\n\
             longer    100\n"
        );
    }

    #[test]
    fn short_rows_are_padded_and_long_rows_cut() {
        let mut t = Table::new(["A", "B"]);
        t.row(["1"]);
        t.row(["2", "3", "dropped"]);
        assert_eq!(t.to_string(), "A  B\n1\n2  3\n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let mut t = Table::new(["X", "Y"]);
        t.row(["ab…", "1"]);
        t.row(["abcd", "2"]);
        assert_eq!(t.to_string(), "X     Y\nab…   1\nabcd  2\n");
    }

    #[test]
    fn control_characters_cannot_break_a_row() {
        let mut t = Table::new(["A", "B"]);
        t.row(["two\nlines", "\x1b[31mred"]);
        assert_eq!(t.to_string().lines().count(), 2);
        assert!(!t.to_string().contains('\x1b'));
    }

    #[test]
    fn header_only_table_is_empty() {
        let t = Table::new(["A"]);
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
        assert_eq!(t.to_string(), "A\n");
    }

    #[test]
    fn fields_align_values() {
        assert_eq!(
            fields(&[
                ("id", "7".into()),
                ("state", "leased".into()),
                ("x", "".into())
            ]),
            "id     7\nstate  leased\nx\n"
        );
    }
}
