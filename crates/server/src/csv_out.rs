//! Every CSV the project writes goes through [`Writer`], which neutralises
//! cells a spreadsheet would run as a formula (CSV or formula injection):
//! a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return
//! gets a leading `'`, as OWASP recommends, so `=HYPERLINK(...)` from a
//! client's context arrives as text. Plain numbers (`-3`, `+1.5e3`) are
//! left alone: a spreadsheet reads them as numbers, never as formulas. The
//! `csv` crate quotes cells with separators, quotes or line breaks.

use std::borrow::Cow;
use std::io;

/// What a cell may not start with (OWASP, "CSV Injection").
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `cell`, with a `'` in front if a spreadsheet would take it as a formula.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_START) && !is_plain_number(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// An optional sign, digits with an optional decimal point (at least one
/// digit), an optional exponent. Hand-written: a regex crate for one
/// pattern is not worth its weight, and `f64::from_str` also takes `inf`.
fn is_plain_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut n = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        n += digits(&mut i);
    }
    if n == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A CSV writer whose every cell is [`neutralise`]d.
pub struct Writer<W: io::Write>(csv::Writer<W>);

impl<W: io::Write> Writer<W> {
    pub fn from_writer(out: W) -> Self {
        Writer(csv::Writer::from_writer(out))
    }

    pub fn write_record<'a>(
        &mut self,
        cells: impl IntoIterator<Item = &'a str>,
    ) -> csv::Result<()> {
        for cell in cells {
            self.0.write_field(neutralise(cell).as_bytes())?;
        }
        self.0.write_record(None::<&[u8]>)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }

    /// Flushes and gives back the underlying writer.
    pub fn into_inner(self) -> io::Result<W> {
        self.0.into_inner().map_err(|e| e.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formulas_become_text_numbers_stay_numbers() {
        for (cell, out) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(1)", "'@SUM(1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("-", "'-"),
            ("+.", "'+."),
            ("-1e", "'-1e"),
            ("-inf", "'-inf"),
            ("-12", "-12"),
            ("+1.5e3", "+1.5e3"),
            ("-.5", "-.5"),
            ("-3.", "-3."),
            ("wiki-a", "wiki-a"),
            ("", ""),
            (" =1", " =1"),
            ("'=1", "'=1"),
        ] {
            assert_eq!(neutralise(cell), out, "{cell:?}");
        }
    }

    #[test]
    fn the_writer_neutralises_every_cell() {
        let mut out = Vec::new();
        let mut w = Writer::from_writer(&mut out);
        w.write_record(["=1+1", "ok", "-7", "@a,b"]).unwrap();
        w.flush().unwrap();
        drop(w);
        assert_eq!(String::from_utf8(out).unwrap(), "'=1+1,ok,-7,\"'@a,b\"\n");
    }

    proptest! {
        /// No cell written starts a formula, and nothing is lost: the
        /// original is the written cell, or it without the added quote.
        #[test]
        fn no_cell_starts_a_formula(cell in "[=+@\t\r0-9.eE'a -]{0,12}|\\PC{0,12}") {
            let out = neutralise(&cell);
            prop_assert!(!out.starts_with(FORMULA_START) || is_plain_number(&out));
            prop_assert!(out == cell || out.strip_prefix('\'') == Some(cell.as_str()));
            if is_plain_number(&cell) {
                prop_assert!(cell.trim_start_matches(['+', '-']).parse::<f64>().is_ok());
            }
        }
    }
}
