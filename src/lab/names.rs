//! Weighted name, city and interest lists, shipped in `data/names/` and embedded in the binary.

use rand::distributions::{Distribution, WeightedIndex};
use rand::Rng;

/// A list of values drawn with realistic frequencies.
pub struct WeightedList {
    values: Vec<&'static str>,
    index: WeightedIndex<u64>,
}

impl WeightedList {
    /// Parses `value,weight` lines after a header line.
    fn parse(csv: &'static str) -> Self {
        Self::parse_where(csv, |_| true)
    }

    /// Parses the `value,weight` lines whose value passes `keep`.
    fn parse_where(csv: &'static str, keep: impl Fn(&str) -> bool) -> Self {
        let mut values = Vec::new();
        let mut weights = Vec::new();
        for line in csv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let (value, weight) = line
                .rsplit_once(',')
                .expect("name lists are value,weight lines");
            if !keep(value.trim()) {
                continue;
            }
            values.push(value.trim());
            weights.push(weight.trim().parse::<u64>().expect("weights are integers"));
        }
        let index = WeightedIndex::new(&weights).expect("a list has positive weights");
        WeightedList { values, index }
    }

    pub fn pick<R: Rng>(&self, rng: &mut R) -> &'static str {
        self.values[self.index.sample(rng)]
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Names and words of one language.
pub struct Language {
    pub male_first: WeightedList,
    pub female_first: WeightedList,
    /// Surnames in their masculine form; see [`feminine_surname`].
    pub last: WeightedList,
    pub bio_words: Vec<&'static str>,
    pub cities: WeightedList,
    pub russian: bool,
}

pub struct NameData {
    pub russian: Language,
    pub english: Language,
}

impl NameData {
    /// Every biography word of both languages: the vocabulary of generated posts and messages.
    pub fn vocabulary(&self) -> Vec<&'static str> {
        self.russian
            .bio_words
            .iter()
            .chain(self.english.bio_words.iter())
            .copied()
            .collect()
    }

    pub fn load() -> Self {
        let bio = include_str!("../../data/names/bio_words.csv");
        let words = |lang: &str| -> Vec<&'static str> {
            bio.lines()
                .skip(1)
                .filter_map(|l| l.rsplit_once(','))
                .filter(|(_, l)| l.trim() == lang)
                .map(|(w, _)| w.trim())
                .collect()
        };
        // Cities are one list: the Cyrillic ones go with Russian names, the Latin ones with English.
        let cities = include_str!("../../data/names/cities.csv");
        let ru_cities = WeightedList::parse_where(cities, |c| c.chars().any(is_cyrillic));
        let en_cities = WeightedList::parse_where(cities, |c| !c.chars().any(is_cyrillic));
        NameData {
            russian: Language {
                male_first: WeightedList::parse(include_str!("../../data/names/ru_first_male.csv")),
                female_first: WeightedList::parse(include_str!(
                    "../../data/names/ru_first_female.csv"
                )),
                last: WeightedList::parse(include_str!("../../data/names/ru_last.csv")),
                bio_words: words("ru"),
                cities: ru_cities,
                russian: true,
            },
            english: Language {
                male_first: WeightedList::parse(include_str!("../../data/names/en_first_male.csv")),
                female_first: WeightedList::parse(include_str!(
                    "../../data/names/en_first_female.csv"
                )),
                last: WeightedList::parse(include_str!("../../data/names/en_last.csv")),
                bio_words: words("en"),
                cities: en_cities,
                russian: false,
            },
        }
    }
}

pub fn is_cyrillic(c: char) -> bool {
    ('\u{0400}'..='\u{04FF}').contains(&c)
}

/// The feminine form of a Russian surname given in its masculine form:
/// Иванов → Иванова, Ильин → Ильина, Толстой → Толстая, Островский → Островская,
/// while Белых, Шевченко and Ковальчук do not change.
pub fn feminine_surname(masculine: &str) -> String {
    for (ending, replacement) in [
        ("ский", "ская"),
        ("цкий", "цкая"),
        ("ой", "ая"),
        ("ый", "ая"),
    ] {
        if let Some(stem) = masculine.strip_suffix(ending) {
            return format!("{stem}{replacement}");
        }
    }
    for ending in ["ов", "ев", "ёв", "ин", "ын"] {
        if masculine.ends_with(ending) {
            return format!("{masculine}а");
        }
    }
    masculine.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feminine_surnames_follow_russian_grammar() {
        assert_eq!(feminine_surname("Иванов"), "Иванова");
        assert_eq!(feminine_surname("Соловьёв"), "Соловьёва");
        assert_eq!(feminine_surname("Ильин"), "Ильина");
        assert_eq!(feminine_surname("Толстой"), "Толстая");
        assert_eq!(feminine_surname("Островский"), "Островская");
        assert_eq!(feminine_surname("Белых"), "Белых");
        assert_eq!(feminine_surname("Шевченко"), "Шевченко");
    }

    #[test]
    fn every_shipped_list_loads_with_both_scripts_separated() {
        let data = NameData::load();
        for lang in [&data.russian, &data.english] {
            assert!(lang.male_first.len() >= 100);
            assert!(lang.female_first.len() >= 100);
            assert!(lang.last.len() >= 300);
            assert!(lang.bio_words.len() >= 100);
            assert!(!lang.cities.is_empty());
        }
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            assert!(data.russian.cities.pick(&mut rng).chars().any(is_cyrillic));
            assert!(!data.english.cities.pick(&mut rng).chars().any(is_cyrillic));
            assert!(!data.english.last.pick(&mut rng).chars().any(is_cyrillic));
        }
    }
}
