//! LiteLLM's duration strings: `30s`, `30m`, `30h`, `30d`, `1w`, `1mo` (30 days).

pub fn parse_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let unit_ms: i64 = match unit.trim() {
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        "mo" => 30 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms).filter(|ms| *ms > 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn units() {
        assert_eq!(super::parse_ms("30s"), Some(30_000));
        assert_eq!(super::parse_ms("2h"), Some(7_200_000));
        assert_eq!(super::parse_ms("1mo"), Some(2_592_000_000));
        assert_eq!(super::parse_ms("30d"), Some(2_592_000_000));
        assert_eq!(super::parse_ms("0d"), None);
        assert_eq!(super::parse_ms("10x"), None);
        assert_eq!(super::parse_ms("d"), None);
    }
}
