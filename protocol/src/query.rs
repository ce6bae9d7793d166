//! The offer query language.
//!
//! ```text
//! gpu=H100 vram>=80 count>=2 price<=2.5 tflops>=300 region=EU energy=renewable verified
//! ```
//!
//! A query is clauses separated by spaces, all of which must hold. A clause
//! is `field op value`, or a flag: `verified`, `simulated`, `!verified`,
//! `!simulated`. Operators: `=`, `!=`, `<`, `<=`, `>`, `>=`, and `~`
//! (case-insensitive substring, text fields only). Values may be quoted
//! (`region="US EAST"`, with `\"` and `\\` escapes). Text compares ignore
//! ASCII case.
//!
//! | field | unit | kind |
//! | --- | --- | --- |
//! | `gpu` | model name | text |
//! | `vram` | GiB per GPU | number |
//! | `count` | free GPUs | number |
//! | `total` | GPUs in the offer | number |
//! | `price` | AGR per GPU-hour | number |
//! | `tflops` | FP32 TFLOPS per GPU | number |
//! | `tflop_price` | AGR per FP32 TFLOP-hour (price ÷ tflops) | number |
//! | `bandwidth` | GB/s | number |
//! | `cc` | compute capability (8.0, 9.0) | number |
//! | `region`, `jurisdiction`, `energy`, `runtime` | | text |
//! | `provider` | hex public key (`~` for a prefix search) | text |
//!
//! Numbers compare exactly as fixed-point integers (no floating point), and
//! the derived `tflop_price` by cross-multiplication. Sorting
//! ([`SortKey`]) works on the numeric fields, so a developer can ask for
//! the cheapest compute, not the cheapest card: `--sort tflop_price`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::amount::parse_fixed;
use crate::offer::{Energy, Offer};

/// A query that does not parse: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct QueryError {
    /// 1-based column (in characters) where the problem starts.
    pub column: usize,
    /// What was found and what was expected.
    pub message: String,
}

/// A field of an offer a query can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// GPU model.
    Gpu,
    /// VRAM per GPU, GiB.
    Vram,
    /// Free GPUs.
    Count,
    /// GPUs in the offer.
    Total,
    /// AGR per GPU-hour.
    Price,
    /// FP32 TFLOPS per GPU.
    Tflops,
    /// AGR per TFLOP-hour (derived).
    TflopPrice,
    /// Memory bandwidth, GB/s.
    Bandwidth,
    /// Compute capability.
    Cc,
    /// Region code.
    Region,
    /// Country code.
    Jurisdiction,
    /// Energy source.
    Energy,
    /// Provider key (hex).
    Provider,
    /// A runtime the provider runs.
    Runtime,
}

const FIELDS: [(&str, Field); 14] = [
    ("gpu", Field::Gpu),
    ("vram", Field::Vram),
    ("count", Field::Count),
    ("total", Field::Total),
    ("price", Field::Price),
    ("tflops", Field::Tflops),
    ("tflop_price", Field::TflopPrice),
    ("bandwidth", Field::Bandwidth),
    ("cc", Field::Cc),
    ("region", Field::Region),
    ("jurisdiction", Field::Jurisdiction),
    ("energy", Field::Energy),
    ("provider", Field::Provider),
    ("runtime", Field::Runtime),
];

impl Field {
    /// The name used in queries.
    pub fn name(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    fn lookup(name: &str) -> Option<Field> {
        FIELDS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| *f)
    }

    fn is_numeric(self) -> bool {
        matches!(
            self,
            Field::Vram
                | Field::Count
                | Field::Total
                | Field::Price
                | Field::Tflops
                | Field::TflopPrice
                | Field::Bandwidth
                | Field::Cc
        )
    }

    /// Decimal places a query value may have, and the factor that turns
    /// the parsed fixed-point value into the offer's scale.
    fn scale(self) -> (usize, u128) {
        match self {
            // GiB with 3 decimals → MiB × 1000 (the offer side is scaled to match).
            Field::Vram => (3, 1024),
            Field::Count | Field::Total => (0, 1),
            Field::Price | Field::TflopPrice => (6, 1),
            // milli-TFLOPS; GB/s with 3 decimals = MB/s.
            Field::Tflops | Field::Bandwidth => (3, 1),
            Field::Cc => (1, 1),
            _ => (0, 1),
        }
    }

    /// The value of a numeric field as a fraction `num / den` in the
    /// query's scale.
    pub(crate) fn value(self, n: &Numbers) -> (u128, u128) {
        match self {
            Field::Vram => (u128::from(n.vram_mib) * 1000, 1),
            Field::Count => (u128::from(n.gpu_free), 1),
            Field::Total => (u128::from(n.gpu_total), 1),
            Field::Price => (u128::from(n.price), 1),
            Field::Tflops => (u128::from(n.fp32_mtflops), 1),
            // base units per TFLOP-hour = price × 1000 / mTFLOPS.
            Field::TflopPrice => (
                u128::from(n.price) * 1000,
                u128::from(n.fp32_mtflops.max(1)),
            ),
            Field::Bandwidth => (u128::from(n.bandwidth_mbps), 1),
            Field::Cc => (u128::from(n.compute_capability), 1),
            _ => (0, 1),
        }
    }
}

/// The numeric fields of an offer, compact, for fast evaluation and sorting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Numbers {
    pub(crate) vram_mib: u64,
    pub(crate) price: u64,
    pub(crate) fp32_mtflops: u64,
    pub(crate) bandwidth_mbps: u64,
    pub(crate) gpu_free: u32,
    pub(crate) gpu_total: u32,
    pub(crate) compute_capability: u32,
}

impl Numbers {
    pub(crate) fn of(offer: &Offer) -> Self {
        Self {
            vram_mib: offer.vram_mib,
            price: offer.price_per_gpu_hour.0,
            fp32_mtflops: offer.benchmark.fp32_mtflops,
            bandwidth_mbps: offer.benchmark.memory_bandwidth_mbps,
            gpu_free: offer.gpu_free,
            gpu_total: offer.gpu_total,
            compute_capability: offer.compute_capability,
        }
    }
}

/// Whether `numbers` satisfy `field op value`.
pub(crate) fn number_matches(field: Field, op: Op, value: u128, numbers: &Numbers) -> bool {
    let (num, den) = field.value(numbers);
    op.holds(num.cmp(&(value * den)))
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `~` (substring, text only)
    Contains,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "~",
        }
    }

    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Contains => false,
        }
    }
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    /// A numeric comparison; `value` is in the field's scale.
    Number {
        /// The field.
        field: Field,
        /// The operator.
        op: Op,
        /// The value, scaled.
        value: u128,
        /// As written, for display.
        text: String,
    },
    /// A text comparison.
    Text {
        /// The field.
        field: Field,
        /// The operator.
        op: Op,
        /// The value.
        value: String,
    },
    /// `verified` / `!verified`.
    Verified(bool),
    /// `simulated` / `!simulated`.
    Simulated(bool),
}

/// A parsed query: all clauses must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    clauses: Vec<Clause>,
}

impl Query {
    /// Parses a query. The empty query matches every offer.
    pub fn parse(input: &str) -> Result<Self, QueryError> {
        let mut clauses = Vec::new();
        for token in tokenize(input)? {
            clauses.push(parse_clause(&token)?);
        }
        Ok(Self { clauses })
    }

    /// The clauses.
    pub fn clauses(&self) -> &[Clause] {
        &self.clauses
    }

    /// Whether `offer` satisfies every clause.
    pub fn matches(&self, offer: &Offer) -> bool {
        self.clauses.iter().all(|c| clause_matches(c, offer))
    }
}

impl FromStr for Query {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, clause) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match clause {
                Clause::Number {
                    field, op, text, ..
                } => write!(f, "{}{}{}", field.name(), op.as_str(), text)?,
                Clause::Text { field, op, value } => {
                    write!(f, "{}{}", field.name(), op.as_str())?;
                    write_value(f, value)?;
                }
                Clause::Verified(yes) => {
                    f.write_str(if *yes { "verified" } else { "!verified" })?
                }
                Clause::Simulated(yes) => {
                    f.write_str(if *yes { "simulated" } else { "!simulated" })?
                }
            }
        }
        Ok(())
    }
}

fn write_value(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '"' | '\\' | '=' | '<' | '>' | '!' | '~'));
    if plain {
        return f.write_str(value);
    }
    f.write_str("\"")?;
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

/// A clause's text with where it starts.
struct Token {
    /// 1-based column of the first character.
    column: usize,
    /// The field name or flag, as written.
    head: String,
    /// The operator and the unquoted value, if any.
    rest: Option<(Op, usize, String)>,
}

fn tokenize(input: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        // Head: up to an operator or whitespace. A leading '!' belongs to a flag.
        let mut head = String::new();
        if chars[i] == '!' {
            head.push('!');
            i += 1;
        }
        while i < chars.len()
            && !chars[i].is_whitespace()
            && !matches!(chars[i], '=' | '<' | '>' | '!' | '~' | '"')
        {
            head.push(chars[i]);
            i += 1;
        }
        if head.is_empty() || head == "!" {
            return Err(QueryError {
                column: start + 1,
                message: format!(
                    "expected a field name, found {:?}",
                    chars[i.min(chars.len() - 1)]
                ),
            });
        }
        if i >= chars.len() || chars[i].is_whitespace() {
            tokens.push(Token {
                column: start + 1,
                head,
                rest: None,
            });
            continue;
        }
        if chars[i] == '"' {
            return Err(QueryError {
                column: i + 1,
                message: format!("expected an operator after {head:?}, found '\"'"),
            });
        }
        let op_column = i + 1;
        let two = |a: char, b: char| chars[i] == a && chars.get(i + 1) == Some(&b);
        let op = if two('!', '=') {
            i += 2;
            Op::Ne
        } else if two('<', '=') {
            i += 2;
            Op::Le
        } else if two('>', '=') {
            i += 2;
            Op::Ge
        } else {
            let op = match chars[i] {
                '=' => Op::Eq,
                '<' => Op::Lt,
                '>' => Op::Gt,
                '~' => Op::Contains,
                other => {
                    return Err(QueryError {
                        column: op_column,
                        message: format!(
                            "expected an operator (= != < <= > >= ~), found {other:?}"
                        ),
                    });
                }
            };
            i += 1;
            op
        };
        let value_column = i + 1;
        let mut value = String::new();
        if i < chars.len() && chars[i] == '"' {
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(QueryError {
                            column: value_column,
                            message: "unterminated quoted value: add the closing '\"'".into(),
                        });
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(c @ ('"' | '\\')) => {
                                value.push(*c);
                                i += 2;
                            }
                            _ => {
                                return Err(QueryError { column: i + 1, message: "a backslash in a quoted value must be followed by '\"' or '\\'".into() });
                            }
                        }
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
            if i < chars.len() && !chars[i].is_whitespace() {
                return Err(QueryError {
                    column: i + 1,
                    message: "expected a space after the closing quote".into(),
                });
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if matches!(chars[i], '=' | '<' | '>' | '~' | '"') {
                    return Err(QueryError {
                        column: i + 1,
                        message: format!(
                            "unexpected {:?} in a value; quote values that contain it",
                            chars[i]
                        ),
                    });
                }
                value.push(chars[i]);
                i += 1;
            }
        }
        if value.is_empty() {
            return Err(QueryError {
                column: value_column,
                message: format!("expected a value after \"{head}{}\"", op.as_str()),
            });
        }
        tokens.push(Token {
            column: start + 1,
            head,
            rest: Some((op, value_column, value)),
        });
    }
    Ok(tokens)
}

fn field_list() -> String {
    FIELDS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_clause(token: &Token) -> Result<Clause, QueryError> {
    let Some((op, value_column, value)) = &token.rest else {
        return match token.head.to_ascii_lowercase().as_str() {
            "verified" => Ok(Clause::Verified(true)),
            "!verified" => Ok(Clause::Verified(false)),
            "simulated" => Ok(Clause::Simulated(true)),
            "!simulated" => Ok(Clause::Simulated(false)),
            _ if Field::lookup(&token.head).is_some() => Err(QueryError {
                column: token.column + token.head.chars().count(),
                message: format!(
                    "expected an operator after {:?} (= != < <= > >= ~)",
                    token.head
                ),
            }),
            _ => Err(QueryError {
                column: token.column,
                message: format!(
                    "unknown flag {:?}; expected verified, simulated, !verified or !simulated",
                    token.head
                ),
            }),
        };
    };
    let field = Field::lookup(&token.head).ok_or_else(|| QueryError {
        column: token.column,
        message: format!(
            "unknown field {:?}; expected one of {}",
            token.head,
            field_list()
        ),
    })?;
    let op = *op;
    if field.is_numeric() {
        if op == Op::Contains {
            return Err(QueryError {
                column: value_column - 1,
                message: format!(
                    "'~' works on text fields; {} is a number (use = != < <= > >=)",
                    field.name()
                ),
            });
        }
        let (decimals, factor) = field.scale();
        let parsed = parse_fixed(value, decimals).map_err(|e| QueryError {
            column: *value_column,
            message: format!(
                "expected a number after \"{}{}\": {e}",
                field.name(),
                op.as_str()
            ),
        })?;
        return Ok(Clause::Number {
            field,
            op,
            value: u128::from(parsed) * factor,
            text: value.clone(),
        });
    }
    if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) {
        return Err(QueryError {
            column: value_column - op.as_str().len(),
            message: format!("{} is text; use =, != or ~", field.name()),
        });
    }
    if field == Field::Energy && op != Op::Contains {
        Energy::from_str(value).map_err(|e| QueryError {
            column: *value_column,
            message: e,
        })?;
    }
    Ok(Clause::Text {
        field,
        op,
        value: value.clone(),
    })
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

pub(crate) fn text_matches(op: Op, actual: &str, wanted: &str) -> bool {
    match op {
        Op::Eq => actual.eq_ignore_ascii_case(wanted),
        Op::Ne => !actual.eq_ignore_ascii_case(wanted),
        Op::Contains => contains_ignore_case(actual, wanted),
        _ => false,
    }
}

pub(crate) fn clause_matches(clause: &Clause, offer: &Offer) -> bool {
    match clause {
        Clause::Number {
            field, op, value, ..
        } => number_matches(*field, *op, *value, &Numbers::of(offer)),
        Clause::Text { field, op, value } => match field {
            Field::Gpu => text_matches(*op, &offer.gpu_model, value),
            Field::Region => text_matches(*op, &offer.region, value),
            Field::Jurisdiction => {
                text_matches(*op, offer.jurisdiction.as_deref().unwrap_or(""), value)
            }
            Field::Energy => text_matches(*op, offer.energy.as_str(), value),
            Field::Provider => {
                let hex = hex::encode(offer.provider.as_bytes());
                text_matches(*op, &hex, value)
            }
            Field::Runtime => match op {
                Op::Ne => !offer.runtimes.iter().any(|r| r.eq_ignore_ascii_case(value)),
                _ => offer.runtimes.iter().any(|r| text_matches(*op, r, value)),
            },
            _ => false,
        },
        Clause::Verified(want) => offer.verified() == *want,
        Clause::Simulated(want) => offer.simulated == *want,
    }
}

/// A numeric field to sort by, ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    /// The field (numeric only).
    pub field: Field,
    /// Largest first.
    pub descending: bool,
}

impl SortKey {
    /// Orders two offers by this key; ties broken by offer id, so the order
    /// is total and deterministic.
    pub fn compare(&self, a: &Offer, b: &Offer) -> Ordering {
        self.compare_numbers(&Numbers::of(a), &Numbers::of(b))
            .then_with(|| a.id().cmp(&b.id()))
    }

    /// Orders by this key alone (no tie-break).
    pub(crate) fn compare_numbers(&self, a: &Numbers, b: &Numbers) -> Ordering {
        let (an, ad) = self.field.value(a);
        let (bn, bd) = self.field.value(b);
        // an/ad vs bn/bd, exactly.
        let ord = (an * bd).cmp(&(bn * ad));
        if self.descending { ord.reverse() } else { ord }
    }
}

impl FromStr for SortKey {
    type Err = QueryError;
    /// `price`, `-price`, `price:asc`, `price:desc`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, descending) = if let Some(rest) = s.strip_prefix('-') {
            (rest, true)
        } else if let Some((name, dir)) = s.split_once(':') {
            match dir.to_ascii_lowercase().as_str() {
                "asc" => (name, false),
                "desc" => (name, true),
                _ => {
                    return Err(QueryError {
                        column: name.len() + 2,
                        message: format!("expected asc or desc, found {dir:?}"),
                    });
                }
            }
        } else {
            (s, false)
        };
        let field = Field::lookup(name)
            .filter(|f| f.is_numeric())
            .ok_or_else(|| QueryError {
                column: 1,
                message: format!(
                    "cannot sort by {name:?}; expected one of {}",
                    FIELDS
                        .iter()
                        .filter(|(_, f)| f.is_numeric())
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        Ok(Self { field, descending })
    }
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.field.name(),
            if self.descending { "desc" } else { "asc" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::Amount;
    use crate::identity::Keypair;
    use crate::offer::tests::sample_offer;
    use proptest::prelude::*;

    fn offer() -> Offer {
        // H100, 80 GiB, 60 TFLOPS, 8 free of 8, 2.0 AGR, EU/DE, renewable, simulated.
        sample_offer(&Keypair::from_seed(&[1; 32]))
    }

    fn q(s: &str) -> Query {
        Query::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_design_example_parses_and_evaluates() {
        let query = q(
            "gpu=H100 vram>=80 count>=2 price<=2.5 tflops>=50 region=EU energy=renewable simulated",
        );
        assert_eq!(query.clauses().len(), 8);
        assert!(query.matches(&offer()));
        assert!(!q("verified").matches(&offer()));
        assert!(q("!verified").matches(&offer()));
    }

    #[test]
    fn every_operator_and_field() {
        let o = offer();
        let yes = [
            "gpu=h100",
            "gpu!=A100",
            "gpu~10",
            "vram=80",
            "vram>79.5",
            "vram<80.001",
            "count=8",
            "total<=8",
            "price=2",
            "price>1.999999",
            "tflops=60",
            "tflops<60.001",
            "bandwidth>=3000",
            "cc=9.0",
            "cc>8",
            "region=eu",
            "region~E",
            "jurisdiction=DE",
            "jurisdiction!=FR",
            "energy=renewable",
            "energy!=fossil",
            "runtime=process",
            "runtime!=ray",
            "tflop_price<=0.034",
            "tflop_price>0.033",
        ];
        for s in yes {
            assert!(q(s).matches(&o), "{s} should match");
        }
        let hex = o.provider.to_string();
        assert!(q(&format!("provider~{}", &hex[..8])).matches(&o));
        assert!(q(&format!("provider={hex}")).matches(&o));
        assert!(!q("provider~zz").matches(&o));
        let no = [
            "gpu=A100",
            "vram>80",
            "count>8",
            "price<2",
            "region!=EU",
            "energy=fossil",
            "runtime=ray",
            "cc<9",
        ];
        for s in no {
            assert!(!q(s).matches(&o), "{s} should not match");
        }
    }

    #[test]
    fn tflop_price_is_exact() {
        // 2.0 AGR / 60 TFLOPS = 0.0333… AGR per TFLOP-hour.
        let o = offer();
        assert!(q("tflop_price>0.033333").matches(&o));
        assert!(q("tflop_price<0.033334").matches(&o));
        assert!(!q("tflop_price=0.033333").matches(&o));
    }

    #[test]
    fn quoted_values_and_escapes() {
        let mut o = offer();
        o.region = "US-EAST".into();
        assert!(q(r#"region="us-east""#).matches(&o));
        let query = q(r#"gpu~"H1" region!="A \"B\" \\C""#);
        assert!(query.matches(&o));
        assert_eq!(Query::parse(&query.to_string()).unwrap(), query);
    }

    #[test]
    fn errors_say_where_and_what() {
        let cases = [
            ("gpu=H100 vrm>=80", 10, "unknown field \"vrm\""),
            ("vram>=abc", 7, "expected a number after \"vram>=\""),
            ("gpu=", 5, "expected a value"),
            ("region=\"EU", 8, "unterminated"),
            ("price~2", 6, "'~' works on text fields"),
            ("gpu>=H100", 4, "gpu is text"),
            ("fast", 1, "unknown flag"),
            ("vram", 5, "expected an operator"),
            ("energy=solar", 8, "unknown energy source"),
            ("price<=1.0000001", 8, "more than 6 decimal places"),
            ("=5", 1, "expected a field name"),
        ];
        for (input, column, message) in cases {
            let err = Query::parse(input).unwrap_err();
            assert_eq!(err.column, column, "{input}: {err}");
            assert!(err.message.contains(message), "{input}: {err}");
        }
    }

    #[test]
    fn sort_keys() {
        let a = offer();
        let mut b = offer();
        b.slot = 1;
        b.price_per_gpu_hour = Amount(1_000_000);
        b.benchmark.fp32_mtflops = 20_000; // 0.05 AGR/TFLOP-h: cheaper card, dearer compute
        let by = |s: &str| s.parse::<SortKey>().unwrap();
        assert_eq!(by("price").compare(&a, &b), Ordering::Greater);
        assert_eq!(by("-price").compare(&a, &b), Ordering::Less);
        assert_eq!(by("tflop_price").compare(&a, &b), Ordering::Less);
        assert_eq!(by("tflop_price:desc").compare(&a, &b), Ordering::Greater);
        assert_ne!(
            by("count").compare(&a, &b),
            Ordering::Equal,
            "ties break by offer id"
        );
        assert!("gpu".parse::<SortKey>().is_err());
        assert!("price:up".parse::<SortKey>().is_err());
    }

    fn clause_strategy() -> impl Strategy<Value = String> {
        let numeric = prop::sample::select(vec![
            "vram",
            "count",
            "total",
            "price",
            "tflops",
            "tflop_price",
            "bandwidth",
            "cc",
        ]);
        let ops = prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">="]);
        let text =
            prop::sample::select(vec!["gpu", "region", "jurisdiction", "runtime", "provider"]);
        let text_ops = prop::sample::select(vec!["=", "!=", "~"]);
        prop_oneof![
            (numeric, ops, 0u32..100_000).prop_map(|(f, o, v)| format!("{f}{o}{v}")),
            (text, text_ops, "[a-zA-Z0-9 \"\\\\-]{1,8}").prop_map(|(f, o, v)| {
                let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
                format!("{f}{o}\"{escaped}\"")
            }),
            prop::sample::select(vec!["verified", "!verified", "simulated", "!simulated"])
                .prop_map(String::from),
        ]
    }

    proptest! {
        #[test]
        fn display_round_trips(clauses in prop::collection::vec(clause_strategy(), 0..6)) {
            let query = Query::parse(&clauses.join(" ")).unwrap();
            let again = Query::parse(&query.to_string()).unwrap();
            prop_assert_eq!(&again, &query);
            prop_assert_eq!(again.matches(&offer()), query.matches(&offer()));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in "\\PC{0,40}") {
            let _ = Query::parse(&s);
            let _ = s.parse::<SortKey>();
        }

        #[test]
        fn ne_is_the_negation_of_eq(v in 0u64..200) {
            let o = offer();
            let eq = q(&format!("vram={v}")).matches(&o);
            let ne = q(&format!("vram!={v}")).matches(&o);
            prop_assert_ne!(eq, ne);
        }
    }
}
