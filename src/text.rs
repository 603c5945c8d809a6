//! Small text helpers shared by the modules that explain a mistake: the closest known word
//! to a misspelt one ("did you mean"). A leaf: it imports nothing from the crate.

/// The edit distance between `a` and `b`, letters compared without case (each side cut
/// at 64 characters, enough for keys and names).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(!ca.eq_ignore_ascii_case(cb));
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word`, when it is close enough to be what was meant: at most
/// two edits away, or the same but for case.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .min()
        .filter(|(d, c)| *d <= 2 || c.eq_ignore_ascii_case(word))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_words() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(closest("bindz", &["binds", "mounts"]), Some("binds"));
        assert_eq!(closest("zzzzzz", &["binds", "mounts"]), None);
        assert_eq!(
            closest("CAP_NET_ADMN", &["CAP_NET_ADMIN"]),
            Some("CAP_NET_ADMIN")
        );
    }
}
