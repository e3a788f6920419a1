//! A small subset of Airtable's formula language, enough for formula fields of the generated
//! bases and for `filterByFormula`.
//!
//! Supported: number and string literals, `{field name or id}` references, the operators
//! `& + - * / = != <> < <= > >=`, parentheses, `TRUE()`/`FALSE()` and the functions listed in
//! [`FUNCTIONS`]. Results follow Airtable's conventions: `0/0` is NaN and `1/0` is Infinity
//! (rendered as `{"specialValue":…}`), `ERROR()` and errors propagate as `#ERROR!`.

use serde_json::{Value, json};

const FUNCTIONS: &[&str] = &[
    "CONCATENATE",
    "UPPER",
    "LOWER",
    "LEN",
    "TRIM",
    "IF",
    "AND",
    "OR",
    "NOT",
    "ERROR",
    "BLANK",
    "RECORD_ID",
    "SUM",
    "AVERAGE",
    "MAX",
    "MIN",
    "COUNTA",
    "ARRAYJOIN",
    "VALUE",
    "ROUND",
    "TRUE",
    "FALSE",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Concat,
    Add,
    Subtract,
    Multiply,
    Divide,
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// A parsed formula. Field references are resolved to field ids at parse time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Number(f64),
    Text(String),
    Field(String),
    Call(String, Vec<Expr>),
    Negate(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Field ids the formula reads, in order of first use.
    pub(crate) fn referenced_field_ids(&self) -> Vec<String> {
        fn walk(expr: &Expr, out: &mut Vec<String>) {
            match expr {
                Expr::Field(id) if !out.contains(id) => out.push(id.clone()),
                Expr::Call(_, args) => args.iter().for_each(|arg| walk(arg, out)),
                Expr::Negate(inner) => walk(inner, out),
                Expr::Binary(_, left, right) => {
                    walk(left, out);
                    walk(right, out);
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }
}

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FValue {
    Blank,
    Number(f64),
    Text(String),
    Bool(bool),
    List(Vec<FValue>),
    Error,
}

impl FValue {
    /// Converts a cell value in read format.
    pub(crate) fn from_json(value: Option<&Value>) -> FValue {
        match value {
            None | Some(Value::Null) => FValue::Blank,
            Some(Value::Bool(flag)) => FValue::Bool(*flag),
            Some(Value::Number(number)) => FValue::Number(number.as_f64().unwrap_or(f64::NAN)),
            Some(Value::String(text)) => FValue::Text(text.clone()),
            Some(Value::Array(items)) => FValue::List(
                items
                    .iter()
                    .map(|item| FValue::from_json(Some(item)))
                    .collect(),
            ),
            Some(Value::Object(object)) => {
                if object.contains_key("error") {
                    FValue::Error
                } else if let Some(special) = object.get("specialValue").and_then(Value::as_str) {
                    FValue::Number(match special {
                        "Infinity" => f64::INFINITY,
                        "-Infinity" => f64::NEG_INFINITY,
                        _ => f64::NAN,
                    })
                } else {
                    ["name", "filename", "text", "label", "value"]
                        .iter()
                        .find_map(|key| object.get(*key).and_then(Value::as_str))
                        .map(|text| FValue::Text(text.to_owned()))
                        .unwrap_or(FValue::Blank)
                }
            }
        }
    }

    fn to_number(&self) -> f64 {
        match self {
            FValue::Blank => 0.0,
            FValue::Number(number) => *number,
            FValue::Bool(flag) => f64::from(u8::from(*flag)),
            FValue::Text(text) if text.trim().is_empty() => 0.0,
            FValue::Text(text) => text.trim().parse().unwrap_or(f64::NAN),
            FValue::List(items) if items.len() == 1 => items[0].to_number(),
            FValue::List(_) | FValue::Error => f64::NAN,
        }
    }

    pub(crate) fn to_text(&self) -> String {
        match self {
            FValue::Blank | FValue::Error => String::new(),
            FValue::Number(number) => format_number(*number),
            FValue::Text(text) => text.clone(),
            FValue::Bool(flag) => if *flag { "1" } else { "0" }.to_owned(),
            FValue::List(items) => items
                .iter()
                .map(FValue::to_text)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Airtable's truthiness: 0, false, "", NaN, [] and errors are false.
    pub(crate) fn is_truthy(&self) -> bool {
        match self {
            FValue::Blank | FValue::Error => false,
            FValue::Number(number) => *number != 0.0 && !number.is_nan(),
            FValue::Text(text) => !text.is_empty(),
            FValue::Bool(flag) => *flag,
            FValue::List(items) => !items.is_empty(),
        }
    }

    /// The value as a cell in read format; `None` when empty.
    pub(crate) fn to_cell(&self) -> Option<Value> {
        match self {
            FValue::Blank => None,
            FValue::Error => Some(json!({"error": "#ERROR!"})),
            FValue::Number(number) => Some(number_to_json(*number)),
            FValue::Text(text) if text.is_empty() => None,
            FValue::Text(text) => Some(Value::String(text.clone())),
            FValue::Bool(true) => Some(Value::Bool(true)),
            FValue::Bool(false) => None,
            FValue::List(items) if items.is_empty() => None,
            FValue::List(items) => Some(Value::Array(
                items
                    .iter()
                    .map(|item| item.to_cell().unwrap_or(Value::Null))
                    .collect(),
            )),
        }
    }
}

/// A number as Airtable renders it: integers without a fraction, NaN and infinities as special values.
pub(crate) fn number_to_json(number: f64) -> Value {
    if number.is_nan() {
        json!({"specialValue": "NaN"})
    } else if number.is_infinite() {
        json!({"specialValue": if number > 0.0 { "Infinity" } else { "-Infinity" }})
    } else if number.fract() == 0.0 && number.abs() < 9.0e15 {
        json!(number as i64)
    } else {
        json!(number)
    }
}

fn format_number(number: f64) -> String {
    if number.is_nan() {
        "NaN".to_owned()
    } else if number.is_infinite() {
        if number > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .to_owned()
    } else if number.fract() == 0.0 && number.abs() < 9.0e15 {
        format!("{}", number as i64)
    } else {
        format!("{number}")
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Text(String),
    Field(String),
    Ident(String),
    Op(&'static str),
    Open,
    Close,
    Comma,
}

fn tokenize(source: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let ch = chars[at];
        match ch {
            _ if ch.is_whitespace() => at += 1,
            '{' => {
                let end = chars[at..]
                    .iter()
                    .position(|c| *c == '}')
                    .ok_or("unterminated field reference")?;
                tokens.push(Token::Field(chars[at + 1..at + end].iter().collect()));
                at += end + 1;
            }
            '"' | '\'' => {
                let mut text = String::new();
                at += 1;
                loop {
                    match chars.get(at) {
                        None => return Err("unterminated string".into()),
                        Some('\\') if at + 1 < chars.len() => {
                            text.push(chars[at + 1]);
                            at += 2;
                        }
                        Some(c) if *c == ch => {
                            at += 1;
                            break;
                        }
                        Some(c) => {
                            text.push(*c);
                            at += 1;
                        }
                    }
                }
                tokens.push(Token::Text(text));
            }
            '0'..='9' | '.' => {
                let start = at;
                while at < chars.len() && (chars[at].is_ascii_digit() || chars[at] == '.') {
                    at += 1;
                }
                let literal: String = chars[start..at].iter().collect();
                tokens.push(Token::Number(
                    literal
                        .parse()
                        .map_err(|_| format!("bad number {literal}"))?,
                ));
            }
            'A'..='Z' | 'a'..='z' | '_' => {
                let start = at;
                while at < chars.len() && (chars[at].is_ascii_alphanumeric() || chars[at] == '_') {
                    at += 1;
                }
                tokens.push(Token::Ident(
                    chars[start..at].iter().collect::<String>().to_uppercase(),
                ));
            }
            '(' => {
                tokens.push(Token::Open);
                at += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                at += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                at += 1;
            }
            _ => {
                let two: String = chars[at..(at + 2).min(chars.len())].iter().collect();
                let op = match two.as_str() {
                    "!=" => Some("!="),
                    "<>" => Some("!="),
                    "<=" => Some("<="),
                    ">=" => Some(">="),
                    _ => None,
                };
                if let Some(op) = op {
                    tokens.push(Token::Op(op));
                    at += 2;
                    continue;
                }
                let op = match ch {
                    '&' => "&",
                    '+' => "+",
                    '-' => "-",
                    '*' => "*",
                    '/' => "/",
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    other => return Err(format!("unexpected character {other:?}")),
                };
                tokens.push(Token::Op(op));
                at += 1;
            }
        }
    }
    Ok(tokens)
}

struct Parser<'a, R> {
    tokens: Vec<Token>,
    at: usize,
    resolve: &'a R,
}

impl<R: Fn(&str) -> Option<String>> Parser<'_, R> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn binary_level(
        &mut self,
        ops: &[(&str, BinaryOp)],
        lower: fn(&mut Self) -> Result<Expr, String>,
    ) -> Result<Expr, String> {
        let mut left = lower(self)?;
        while let Some(Token::Op(symbol)) = self.peek() {
            let Some((_, op)) = ops.iter().find(|(candidate, _)| candidate == symbol) else {
                break;
            };
            let op = *op;
            self.at += 1;
            let right = lower(self)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        self.binary_level(
            &[
                ("=", BinaryOp::Equal),
                ("!=", BinaryOp::NotEqual),
                ("<", BinaryOp::Less),
                ("<=", BinaryOp::LessOrEqual),
                (">", BinaryOp::Greater),
                (">=", BinaryOp::GreaterOrEqual),
            ],
            Self::concat,
        )
    }

    fn concat(&mut self) -> Result<Expr, String> {
        self.binary_level(&[("&", BinaryOp::Concat)], Self::additive)
    }

    fn additive(&mut self) -> Result<Expr, String> {
        self.binary_level(
            &[("+", BinaryOp::Add), ("-", BinaryOp::Subtract)],
            Self::multiplicative,
        )
    }

    fn multiplicative(&mut self) -> Result<Expr, String> {
        self.binary_level(
            &[("*", BinaryOp::Multiply), ("/", BinaryOp::Divide)],
            Self::unary,
        )
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Token::Op("-")) {
            self.at += 1;
            return Ok(Expr::Negate(Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Number(number)) => Ok(Expr::Number(number)),
            Some(Token::Text(text)) => Ok(Expr::Text(text)),
            Some(Token::Field(key)) => (self.resolve)(&key)
                .map(Expr::Field)
                .ok_or_else(|| format!("unknown field names: {key}")),
            Some(Token::Open) => {
                let inner = self.comparison()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("missing )".into()),
                }
            }
            Some(Token::Ident(name)) => {
                if self.peek() != Some(&Token::Open) {
                    return match name.as_str() {
                        "TRUE" => Ok(Expr::Call("TRUE".into(), vec![])),
                        "FALSE" => Ok(Expr::Call("FALSE".into(), vec![])),
                        _ => Err(format!("unknown identifier {name}")),
                    };
                }
                if !FUNCTIONS.contains(&name.as_str()) {
                    return Err(format!("unknown function {name}"));
                }
                self.at += 1;
                let mut args = Vec::new();
                if self.peek() == Some(&Token::Close) {
                    self.at += 1;
                    return Ok(Expr::Call(name, args));
                }
                loop {
                    args.push(self.comparison()?);
                    match self.next() {
                        Some(Token::Comma) => continue,
                        Some(Token::Close) => break,
                        _ => return Err("missing ) after arguments".into()),
                    }
                }
                Ok(Expr::Call(name, args))
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

/// Parses `source`; `resolve` maps the text inside `{…}` (a field name or id) to a field id.
pub(crate) fn parse(
    source: &str,
    resolve: &impl Fn(&str) -> Option<String>,
) -> Result<Expr, String> {
    let tokens = tokenize(source)?;
    if tokens.is_empty() {
        return Err("empty formula".into());
    }
    let mut parser = Parser {
        tokens,
        at: 0,
        resolve,
    };
    let expr = parser.comparison()?;
    if parser.at != parser.tokens.len() {
        return Err("unexpected text after the formula".into());
    }
    Ok(expr)
}

/// What a formula can read while it is evaluated.
pub(crate) trait Scope {
    fn field(&self, field_id: &str) -> FValue;
    fn record_id(&self) -> &str;
}

fn flatten(values: Vec<FValue>) -> Vec<FValue> {
    let mut out = Vec::new();
    for value in values {
        match value {
            FValue::List(items) => out.extend(flatten(items)),
            other => out.push(other),
        }
    }
    out
}

/// Evaluates `expr` against a record.
pub(crate) fn eval(expr: &Expr, scope: &dyn Scope) -> FValue {
    match expr {
        Expr::Number(number) => FValue::Number(*number),
        Expr::Text(text) => FValue::Text(text.clone()),
        Expr::Field(id) => scope.field(id),
        Expr::Negate(inner) => match eval(inner, scope) {
            FValue::Error => FValue::Error,
            value => FValue::Number(-value.to_number()),
        },
        Expr::Binary(op, left, right) => {
            let (left, right) = (eval(left, scope), eval(right, scope));
            if left == FValue::Error || right == FValue::Error {
                return FValue::Error;
            }
            binary(*op, &left, &right)
        }
        Expr::Call(name, args) => call(name, args, scope),
    }
}

fn binary(op: BinaryOp, left: &FValue, right: &FValue) -> FValue {
    let numeric =
        |apply: fn(f64, f64) -> f64| FValue::Number(apply(left.to_number(), right.to_number()));
    let textual = matches!(left, FValue::Text(_)) || matches!(right, FValue::Text(_));
    let compare = || {
        if textual {
            left.to_text().cmp(&right.to_text())
        } else {
            left.to_number()
                .partial_cmp(&right.to_number())
                .unwrap_or(std::cmp::Ordering::Equal)
        }
    };
    match op {
        BinaryOp::Concat => FValue::Text(left.to_text() + &right.to_text()),
        BinaryOp::Add => numeric(|a, b| a + b),
        BinaryOp::Subtract => numeric(|a, b| a - b),
        BinaryOp::Multiply => numeric(|a, b| a * b),
        BinaryOp::Divide => numeric(|a, b| a / b),
        BinaryOp::Equal => FValue::Bool(compare().is_eq()),
        BinaryOp::NotEqual => FValue::Bool(compare().is_ne()),
        BinaryOp::Less => FValue::Bool(compare().is_lt()),
        BinaryOp::LessOrEqual => FValue::Bool(compare().is_le()),
        BinaryOp::Greater => FValue::Bool(compare().is_gt()),
        BinaryOp::GreaterOrEqual => FValue::Bool(compare().is_ge()),
    }
}

fn call(name: &str, args: &[Expr], scope: &dyn Scope) -> FValue {
    if name == "IF" {
        let condition = args
            .first()
            .map(|arg| eval(arg, scope))
            .unwrap_or(FValue::Blank);
        if condition == FValue::Error {
            return FValue::Error;
        }
        let branch = if condition.is_truthy() {
            args.get(1)
        } else {
            args.get(2)
        };
        return branch.map(|arg| eval(arg, scope)).unwrap_or(FValue::Blank);
    }
    let values: Vec<FValue> = args.iter().map(|arg| eval(arg, scope)).collect();
    if name != "ERROR" && values.contains(&FValue::Error) && !matches!(name, "AND" | "OR" | "NOT") {
        return FValue::Error;
    }
    let first = values.first().cloned().unwrap_or(FValue::Blank);
    let numbers = || {
        flatten(values.clone())
            .iter()
            .map(FValue::to_number)
            .collect::<Vec<_>>()
    };
    match name {
        "TRUE" => FValue::Bool(true),
        "FALSE" => FValue::Bool(false),
        "ERROR" => FValue::Error,
        "BLANK" => FValue::Blank,
        "RECORD_ID" => FValue::Text(scope.record_id().to_owned()),
        "CONCATENATE" => FValue::Text(values.iter().map(FValue::to_text).collect()),
        "UPPER" => FValue::Text(first.to_text().to_uppercase()),
        "LOWER" => FValue::Text(first.to_text().to_lowercase()),
        "TRIM" => FValue::Text(first.to_text().trim().to_owned()),
        "LEN" => FValue::Number(first.to_text().chars().count() as f64),
        "VALUE" => FValue::Number(first.to_number()),
        "ROUND" => {
            let digits = values.get(1).map(FValue::to_number).unwrap_or(0.0) as i32;
            let scale = 10f64.powi(digits);
            FValue::Number((first.to_number() * scale).round() / scale)
        }
        "AND" => FValue::Bool(!values.is_empty() && values.iter().all(FValue::is_truthy)),
        "OR" => FValue::Bool(values.iter().any(FValue::is_truthy)),
        "NOT" => FValue::Bool(!first.is_truthy()),
        "SUM" => FValue::Number(numbers().iter().sum()),
        "AVERAGE" => {
            let numbers = numbers();
            FValue::Number(numbers.iter().sum::<f64>() / numbers.len() as f64)
        }
        "MAX" => FValue::Number(numbers().into_iter().fold(f64::NEG_INFINITY, f64::max)),
        "MIN" => FValue::Number(numbers().into_iter().fold(f64::INFINITY, f64::min)),
        "COUNTA" => FValue::Number(
            flatten(values.clone())
                .iter()
                .filter(|value| !matches!(value, FValue::Blank))
                .count() as f64,
        ),
        "ARRAYJOIN" => {
            let separator = values
                .get(1)
                .map(FValue::to_text)
                .unwrap_or_else(|| ", ".into());
            FValue::Text(
                flatten(vec![first])
                    .iter()
                    .map(FValue::to_text)
                    .collect::<Vec<_>>()
                    .join(&separator),
            )
        }
        _ => FValue::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Scope for Fixed {
        fn field(&self, field_id: &str) -> FValue {
            match field_id {
                "fldName" => FValue::Text("Ada".into()),
                "fldCount" => FValue::Number(3.0),
                _ => FValue::Blank,
            }
        }
        fn record_id(&self) -> &str {
            "recX"
        }
    }

    fn run(source: &str) -> Option<Value> {
        let resolve = |key: &str| match key {
            "Name" | "fldName" => Some("fldName".to_owned()),
            "Count" | "fldCount" => Some("fldCount".to_owned()),
            "Empty" => Some("fldEmpty".to_owned()),
            _ => None,
        };
        eval(&parse(source, &resolve).unwrap(), &Fixed).to_cell()
    }

    #[test]
    fn evaluates_concatenation_arithmetic_and_special_values() {
        assert_eq!(
            run(r#"{Name} & " (" & {Count} & ")""#),
            Some(json!("Ada (3)"))
        );
        assert_eq!(run("{Count} * 2 + 1"), Some(json!(7)));
        assert_eq!(run("0 / 0"), Some(json!({"specialValue": "NaN"})));
        assert_eq!(run("1 / 0"), Some(json!({"specialValue": "Infinity"})));
        assert_eq!(
            run(r#"{Name} + "FOO""#),
            Some(json!({"specialValue": "NaN"}))
        );
        assert_eq!(run("ERROR()"), Some(json!({"error": "#ERROR!"})));
        assert_eq!(
            run(r#"IF({Count} > 2, "big", "small")"#),
            Some(json!("big"))
        );
        assert_eq!(run("{Empty}"), None);
        assert_eq!(run("RECORD_ID()"), Some(json!("recX")));
    }

    #[test]
    fn rejects_unknown_fields_and_functions() {
        let resolve = |_: &str| None;
        assert!(parse("{Nope}", &resolve).is_err());
        assert!(parse("FROB(1)", &resolve).is_err());
        assert!(parse("1 +", &resolve).is_err());
        assert_eq!(
            parse("{A} & 1", &|_: &str| Some("fldA".into()))
                .unwrap()
                .referenced_field_ids(),
            ["fldA"]
        );
    }
}
