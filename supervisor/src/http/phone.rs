//! Phone numbers leave the API masked: `+40712345697` becomes `+407****97`.

/// Masks a phone a worker reported (JID digits, shown with their `+`).
pub fn mask_reported(phone: &str) -> String {
    if phone.starts_with('+') {
        mask(phone)
    } else {
        mask(&format!("+{phone}"))
    }
}

/// Masks all but the first four and the last two characters of `phone`.
pub fn mask(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 6 {
        return "****".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}****{tail}")
}

/// Accepts `+` and 6 to 20 digits, with spaces, dashes and parentheses ignored; returns the
/// normalized `+digits` form (or digits alone when no `+` was given).
pub fn normalize(phone: &str) -> Option<String> {
    let trimmed = phone.trim();
    let (plus, rest) = match trimmed.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", trimmed),
    };
    let mut digits = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => return None,
        }
    }
    (6..=20)
        .contains(&digits.len())
        .then(|| format!("{plus}{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_the_seed() {
        assert_eq!(mask("+40712345697"), "+407****97");
        assert_eq!(mask("40712345678"), "4071****78");
        assert_eq!(mask("12345"), "****");
    }

    #[test]
    fn normalizes_or_refuses() {
        assert_eq!(
            normalize(" +40 712-345-678 ").as_deref(),
            Some("+40712345678")
        );
        assert_eq!(normalize("12a45678"), None);
        assert_eq!(normalize("+123"), None);
    }
}
