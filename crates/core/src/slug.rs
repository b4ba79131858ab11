use crate::ids::{MAX_DERIVED_SLUG, RESERVED_SLUG, Slug};

/// Derives a slug from a display name: transliterated to ASCII, lowercased, every run of other
/// characters folded to one `_`, trimmed to [`MAX_DERIVED_SLUG`] bytes (so a collision suffix
/// always fits). `Acme Corp` -> `acme_corp`,
/// `Café Zürich` -> `cafe_zurich`. A name starting with a digit gets the `org_` prefix so the
/// result always starts with a letter. A name with no letter or digit at all gives none: the
/// caller asks for an explicit slug instead of inventing one.
pub fn slug_from_name(name: &str) -> Option<Slug> {
    let ascii = deunicode::deunicode(name).to_ascii_lowercase();
    let mut out = String::with_capacity(ascii.len());
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed = out.trim_end_matches('_');
    if trimmed.is_empty() {
        return None;
    }
    let mut slug = if trimmed.starts_with(|c: char| c.is_ascii_lowercase()) {
        trimmed.to_owned()
    } else {
        format!("org_{trimmed}").trim_end_matches('_').to_owned()
    };
    slug.truncate(MAX_DERIVED_SLUG);
    let mut slug = slug.trim_end_matches('_').to_owned();
    if slug == RESERVED_SLUG {
        slug.push_str("_org");
    }
    Some(
        slug.parse()
            .expect("derived slugs satisfy the slug rule by construction"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_readable_slugs() {
        let slug_from_name = |name: &str| slug_from_name(name).expect(name);
        assert_eq!(slug_from_name("Acme Corp").as_str(), "acme_corp");
        assert_eq!(slug_from_name("Café Zürich").as_str(), "cafe_zurich");
        assert_eq!(
            slug_from_name("  --Robert'); DROP TABLE x;--").as_str(),
            "robert_drop_table_x"
        );
        assert_eq!(slug_from_name("42 Labs").as_str(), "org_42_labs");
        assert_eq!(slug_from_name("Template").as_str(), "template_org");
        assert_eq!(slug_from_name("日本").as_str(), "ri_ben");
        let long = slug_from_name(&"Long Name ".repeat(30));
        assert!(long.as_str().len() <= MAX_DERIVED_SLUG);
        assert!(
            format!("{long}_9999").parse::<Slug>().is_ok(),
            "a suffix fits"
        );
        assert!(!long.as_str().ends_with('_'));
    }

    #[test]
    fn a_name_of_symbols_only_gives_no_slug() {
        assert_eq!(slug_from_name("!!!"), None);
        assert_eq!(slug_from_name("  -- ** "), None);
    }
}
