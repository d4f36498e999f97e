//! The little expression language of root device hints: oslo.utils' `specs_matcher`.
//!
//! A hint value is `[<op>] <value> [<op> <value>...]`. The grammar (pyparsing in oslo) is:
//!
//! ```text
//! expr        := disjunction | all_in | range_in | unary | atom
//! disjunction := ("<or>" atom)+            -> ["<or>", atom, atom, ...]
//! all_in      := "<all-in>" atom+
//! range_in    := "<range-in>" atom atom atom atom
//! unary       := op atom,  op in == = != <in> >= <= > < s== s!= s<= s< s>= s>  (first match wins)
//! atom        := a run of non-space characters that does not start with any operator
//! ```
//!
//! Whitespace between tokens is optional and skipped; text after the first complete expression
//! is ignored (oslo parses a prefix). These quirks matter because IPA also splits the original
//! text on the operator to recover values containing spaces, so they are reproduced exactly.

/// Unary operators in the order oslo tries them.
const UNARY_OPS: [&str; 14] = [
    "==", "=", "!=", "<in>", ">=", "<=", ">", "<", "s==", "s!=", "s<=", "s<", "s>=", "s>",
];
const ALL_IN: &str = "<all-in>";
const OR: &str = "<or>";
const RANGE_IN: &str = "<range-in>";

/// pyparsing's default whitespace.
fn skip_ws(s: &str, pos: usize) -> usize {
    pos + s[pos..].len() - s[pos..].trim_start_matches([' ', '\t', '\n', '\r']).len()
}

fn starts_with_keyword(s: &str) -> bool {
    UNARY_OPS
        .iter()
        .chain([ALL_IN, OR, RANGE_IN].iter())
        .any(|op| s.starts_with(op))
}

/// An atom at `pos` (after whitespace): returns it and the position after it.
fn atom(s: &str, pos: usize) -> Option<(String, usize)> {
    let start = skip_ws(s, pos);
    let rest = &s[start..];
    if rest.is_empty() || starts_with_keyword(rest) {
        return None;
    }
    let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
    (len > 0).then(|| (rest[..len].to_string(), start + len))
}

fn literal(s: &str, pos: usize, lit: &str) -> Option<usize> {
    let start = skip_ws(s, pos);
    s[start..].starts_with(lit).then_some(start + lit.len())
}

/// The tokens oslo's grammar produces for `s`, or `None` when it does not parse at all.
pub(crate) fn parse(s: &str) -> Option<Vec<String>> {
    // disjunction
    if let Some(mut pos) = literal(s, 0, OR) {
        if let Some((a, p)) = atom(s, pos) {
            let mut out = vec![OR.to_string(), a];
            pos = p;
            while let Some(p) = literal(s, pos, OR) {
                let Some((a, p)) = atom(s, p) else { break };
                out.push(a);
                pos = p;
            }
            return Some(out);
        }
    }
    // <all-in> atom+
    if let Some(mut pos) = literal(s, 0, ALL_IN) {
        let mut out = vec![ALL_IN.to_string()];
        while let Some((a, p)) = atom(s, pos) {
            out.push(a);
            pos = p;
        }
        if out.len() > 1 {
            return Some(out);
        }
    }
    // <range-in> atom atom atom atom
    if let Some(mut pos) = literal(s, 0, RANGE_IN) {
        let mut out = vec![RANGE_IN.to_string()];
        for _ in 0..4 {
            let Some((a, p)) = atom(s, pos) else { break };
            out.push(a);
            pos = p;
        }
        if out.len() == 5 {
            return Some(out);
        }
    }
    // op atom
    for op in UNARY_OPS {
        if let Some(pos) = literal(s, 0, op) {
            if let Some((a, _)) = atom(s, pos) {
                return Some(vec![op.to_string(), a]);
            }
            // MatchFirst: the first operator that matches is the only one tried.
            break;
        }
    }
    atom(s, 0).map(|(a, _)| vec![a])
}

/// The value a spec is matched against: a normalised string, or a number (disk size in GiB).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Num(f64),
}

/// Why a comparison could not be made (Python would have raised).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct MatchError(pub String);

/// Python's `float(x)` for the strings and numbers specs compare.
fn py_float(v: &Value) -> Result<f64, MatchError> {
    match v {
        Value::Num(n) => Ok(*n),
        Value::Str(s) => parse_float(s),
    }
}

fn parse_float(s: &str) -> Result<f64, MatchError> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    let special = matches!(body, "inf" | "infinity" | "nan");
    let numeric = !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))
        && body.chars().any(|c| c.is_ascii_digit());
    if special || numeric {
        if let Ok(f) = t.parse::<f64>() {
            return Ok(f);
        }
    }
    Err(MatchError(format!(
        "could not convert string to float: '{s}'"
    )))
}

/// A Python literal as `ast.literal_eval` would read the numeric ones (the only kind a device
/// attribute can meaningfully hold for `<range-in>`).
fn literal_number(v: &Value) -> Result<f64, MatchError> {
    match v {
        Value::Num(_) => Err(MatchError("malformed node or string".to_string())),
        Value::Str(s) => {
            let t = s.trim();
            if t.is_empty() || t.chars().any(char::is_whitespace) {
                return Err(MatchError(format!("malformed node or string: {s:?}")));
            }
            parse_float(t).map_err(|_| MatchError(format!("malformed node or string: {s:?}")))
        }
    }
}

fn as_str<'a>(v: &'a Value, op: &str) -> Result<&'a str, MatchError> {
    match v {
        Value::Str(s) => Ok(s),
        Value::Num(_) => Err(MatchError(format!(
            "'{op}' not supported between instances of 'float' and 'str'"
        ))),
    }
}

/// oslo's `specs_matcher.match(value, spec)`.
pub(crate) fn matches(value: &Value, spec: &str) -> Result<bool, MatchError> {
    let tree = parse(spec).unwrap_or_else(|| vec![spec.to_string()]);
    if tree.len() == 1 {
        return Ok(matches!(value, Value::Str(s) if *s == tree[0]));
    }
    let op = tree[0].as_str();
    let args = &tree[1..];
    let y = &args[0];
    Ok(match op {
        "=" | ">=" => py_float(value)? >= parse_float(y)?,
        "!=" => py_float(value)? != parse_float(y)?,
        "<=" => py_float(value)? <= parse_float(y)?,
        "<" => py_float(value)? < parse_float(y)?,
        "==" => py_float(value)? == parse_float(y)?,
        ">" => py_float(value)? > parse_float(y)?,
        "s==" => matches!(value, Value::Str(s) if s == y),
        "s!=" => !matches!(value, Value::Str(s) if s == y),
        "s<" => as_str(value, "<")? < y.as_str(),
        "s<=" => as_str(value, "<=")? <= y.as_str(),
        "s>" => as_str(value, ">")? > y.as_str(),
        "s>=" => as_str(value, ">=")? >= y.as_str(),
        "<in>" => match value {
            Value::Str(s) => s.contains(y.as_str()),
            Value::Num(_) => {
                return Err(MatchError(
                    "argument of type 'float' is not iterable".to_string(),
                ))
            }
        },
        "<or>" => args
            .iter()
            .any(|a| matches!(value, Value::Str(s) if s == a)),
        "<all-in>" => {
            return Err(MatchError(format!(
                "<all-in> must compare with a list literal string, not {}",
                match value {
                    Value::Str(s) => format!("'{s}'"),
                    Value::Num(n) => n.to_string(),
                }
            )))
        }
        "<range-in>" => {
            let x = literal_number(value)?;
            let lo = parse_float(&args[1])?;
            let hi = parse_float(&args[2])?;
            if lo > hi {
                return Err(MatchError(
                    "<range-in> operator's first argument has to be smaller or equal to the second"
                        .into(),
                ));
            }
            let lower = match args[0].as_str() {
                "[" => x >= lo,
                "(" => x > lo,
                _ => {
                    return Err(MatchError(
                        "The first element should be an opening bracket (\"(\" or \"[\")".into(),
                    ))
                }
            };
            let upper = match args[3].as_str() {
                "]" => x <= hi,
                ")" => x < hi,
                _ => {
                    return Err(MatchError(
                        "The last element should be a closing bracket (\")\" or \"]\")".into(),
                    ))
                }
            };
            lower && upper
        }
        _ => return Err(MatchError(format!("unknown operator {op}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Option<Vec<&'static str>> {
        parse(s).map(|v| {
            v.into_iter()
                .map(|t| &*Box::leak(t.into_boxed_str()))
                .collect()
        })
    }

    #[test]
    fn grammar() {
        assert_eq!(toks("foo"), Some(vec!["foo"]));
        assert_eq!(
            toks("foo bar"),
            Some(vec!["foo"]),
            "trailing text is ignored"
        );
        assert_eq!(toks("s== foo"), Some(vec!["s==", "foo"]));
        assert_eq!(
            toks(">=10"),
            Some(vec![">=", "10"]),
            "no space needed after an operator"
        );
        assert_eq!(toks("= 10"), Some(vec!["=", "10"]));
        assert_eq!(toks("== 10"), Some(vec!["==", "10"]));
        assert_eq!(
            toks("<or> a <or> b <or> c"),
            Some(vec!["<or>", "a", "b", "c"])
        );
        assert_eq!(toks("<in> gcc"), Some(vec!["<in>", "gcc"]));
        assert_eq!(
            toks("<all-in> aes mmx"),
            Some(vec!["<all-in>", "aes", "mmx"])
        );
        assert_eq!(
            toks("<range-in> [ 10 20 ]"),
            Some(vec!["<range-in>", "[", "10", "20", "]"])
        );
        // `<is>` is not an oslo operator: it reads as `<` followed by the atom `is>`.
        assert_eq!(toks("<is> true"), Some(vec!["<", "is>"]));
        assert_eq!(toks("<in>"), None);
        assert_eq!(toks("   "), None);
        assert_eq!(toks("=foo"), Some(vec!["=", "foo"]));
    }

    #[test]
    fn operators() {
        let s = |v: &str| Value::Str(v.to_string());
        assert!(matches(&s("abc"), "s== abc").unwrap());
        assert!(!matches(&s("abc"), "s!= abc").unwrap());
        assert!(matches(&s("abd"), "s> abc").unwrap());
        assert!(matches(&s("abc"), "s>= abc").unwrap());
        assert!(matches(&s("abb"), "s< abc").unwrap());
        assert!(matches(&s("abc"), "s<= abc").unwrap());
        assert!(matches(&s("xabcx"), "<in> abc").unwrap());
        assert!(matches(&s("b"), "<or> a <or> b").unwrap());
        assert!(!matches(&s("c"), "<or> a <or> b").unwrap());
        assert!(matches(&Value::Num(10.0), "== 10").unwrap());
        assert!(!matches(&Value::Num(10.5), "== 10").unwrap());
        assert!(
            matches(&Value::Num(10.5), "= 10").unwrap(),
            "bare = means >="
        );
        assert!(matches(&Value::Num(10.5), ">= 10").unwrap());
        assert!(matches(&Value::Num(9.0), "<= 10").unwrap());
        assert!(matches(&Value::Num(9.0), "< 10").unwrap());
        assert!(matches(&Value::Num(11.0), "> 10").unwrap());
        assert!(matches(&Value::Num(11.0), "!= 10").unwrap());
        assert!(matches(&s("15"), "<range-in> [ 10 20 ]").unwrap());
        assert!(!matches(&s("10"), "<range-in> ( 10 20 ]").unwrap());
        // A plain value is compared for string equality.
        assert!(matches(&s("abc"), "abc").unwrap());
        // Comparisons Python cannot make are errors, not mismatches.
        assert!(matches(&s("/dev/sda"), ">= 10").is_err());
        assert!(matches(&Value::Num(1.0), "s< abc").is_err());
        assert!(matches(&s("x"), "<all-in> a").is_err());
    }
}
