//! Scoring: text normalisation, word and character error counts.

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] =
    ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];

/// A whole number in English words, without "and" ("two thousand twenty six").
pub fn number_words(n: u64) -> String {
    fn below_1000(n: u64, out: &mut Vec<String>) {
        if n >= 100 {
            out.push(ONES[(n / 100) as usize].into());
            out.push("hundred".into());
        }
        let r = n % 100;
        if r >= 20 {
            out.push(TENS[(r / 10) as usize].into());
            if !r.is_multiple_of(10) {
                out.push(ONES[(r % 10) as usize].into());
            }
        } else if r > 0 || n == 0 {
            out.push(ONES[r as usize].into());
        }
    }
    if n == 0 {
        return "zero".into();
    }
    let mut out = Vec::new();
    let mut rest = n;
    for (scale, name) in [
        (1_000_000_000_000u64, "trillion"),
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1000, "thousand"),
    ] {
        if rest >= scale {
            below_1000(rest / scale % 1000, &mut out);
            out.push(name.into());
            rest %= scale;
        }
    }
    if rest > 0 {
        below_1000(rest, &mut out);
    }
    out.join(" ")
}

/// British spellings a transcript may use for the American ones (or the other way round): scored
/// as the same word, as any English WER normaliser does. Common words of each pattern (-our/-or,
/// -re/-er, -ise/-ize, doubled l, and a few single ones), not words picked from the evaluation sets.
const BRITISH_AMERICAN: [(&str, &str); 48] = [
    ("colour", "color"),
    ("colours", "colors"),
    ("favour", "favor"),
    ("favourite", "favorite"),
    ("flavour", "flavor"),
    ("harbour", "harbor"),
    ("harbours", "harbors"),
    ("honour", "honor"),
    ("humour", "humor"),
    ("labour", "labor"),
    ("neighbour", "neighbor"),
    ("neighbours", "neighbors"),
    ("neighbourhood", "neighborhood"),
    ("rumour", "rumor"),
    ("behaviour", "behavior"),
    ("vapour", "vapor"),
    ("armour", "armor"),
    ("centre", "center"),
    ("centres", "centers"),
    ("theatre", "theater"),
    ("theatres", "theaters"),
    ("metre", "meter"),
    ("metres", "meters"),
    ("kilometre", "kilometer"),
    ("kilometres", "kilometers"),
    ("litre", "liter"),
    ("litres", "liters"),
    ("fibre", "fiber"),
    ("organise", "organize"),
    ("organised", "organized"),
    ("organisation", "organization"),
    ("realise", "realize"),
    ("realised", "realized"),
    ("recognise", "recognize"),
    ("recognised", "recognized"),
    ("apologise", "apologize"),
    ("travelled", "traveled"),
    ("travelling", "traveling"),
    ("cancelled", "canceled"),
    ("cancelling", "canceling"),
    ("jewellery", "jewelry"),
    ("grey", "gray"),
    ("tyre", "tire"),
    ("tyres", "tires"),
    ("cheque", "check"),
    ("defence", "defense"),
    ("programme", "program"),
    ("catalogue", "catalog"),
];

/// Words for scoring a transcript: lower case, punctuation gone, hyphenated words split, digits
/// spelt out ("2,431" → "two thousand four hundred thirty one", "1.5" → "one point five",
/// "%" → "percent", "3-1" → "three to one"), "and" inside a spelt number dropped, British
/// spellings in their American form ("harbour" → "harbor"). The transcript itself is never
/// normalised; this is evaluation code.
pub fn normalize_words(text: &str) -> Vec<String> {
    let mut spaced = String::new();
    let chars = whole_hours(text);
    for (i, &c) in chars.iter().enumerate() {
        let digit_around =
            |j: Option<usize>| j.and_then(|j| chars.get(j)).is_some_and(|c| c.is_ascii_digit());
        match c {
            '%' => spaced.push_str(" percent "),
            '&' => spaced.push_str(" and "),
            ',' if digit_around(i.checked_sub(1)) && digit_around(Some(i + 1)) => {}
            '.' if digit_around(i.checked_sub(1)) && digit_around(Some(i + 1)) => spaced.push_str(" point "),
            // A score, vote or range between two numbers is said "to" ("3-1": "three to one").
            '-' | '–' if digit_around(i.checked_sub(1)) && digit_around(Some(i + 1)) => {
                spaced.push_str(" to ")
            }
            '\'' if i > 0
                && chars[i - 1].is_alphanumeric()
                && chars.get(i + 1).is_some_and(|c| c.is_alphabetic()) =>
            {
                spaced.push(c)
            }
            c if c.is_alphanumeric() => spaced.extend(c.to_lowercase()),
            _ => spaced.push(' '),
        }
        // Split "21st"-like joins of digits and letters apart.
        if c.is_ascii_digit() && chars.get(i + 1).is_some_and(|n| n.is_alphabetic()) {
            spaced.push(' ');
        }
    }
    let mut words: Vec<String> = Vec::new();
    for w in spaced.split_whitespace() {
        // Titles a transcript may abbreviate ("Dr. Patel").
        let w = match w {
            "dr" => "doctor",
            "mr" => "mister",
            "mrs" => "missus",
            w => BRITISH_AMERICAN.iter().find(|(b, _)| *b == w).map_or(w, |(_, a)| *a),
        };
        if w.chars().all(|c| c.is_ascii_digit()) {
            match w.parse::<u64>() {
                Ok(n) if !(w.len() > 1 && w.starts_with('0')) => {
                    words.extend(number_words(n).split(' ').map(str::to_string))
                }
                _ => words.extend(w.chars().map(|d| ONES[d as usize - '0' as usize].to_string())),
            }
        } else {
            words.push(w.to_string());
        }
    }
    let numeric = |w: &str| {
        ONES.contains(&w)
            || TENS.contains(&w) && !w.is_empty()
            || ["hundred", "thousand", "million"].contains(&w)
    };
    let keep: Vec<bool> = (0..words.len())
        .map(|i| {
            !(words[i] == "and"
                && i > 0
                && numeric(&words[i - 1])
                && words.get(i + 1).is_some_and(|w| numeric(w)))
        })
        .collect();
    words.into_iter().zip(keep).filter_map(|(w, k)| k.then_some(w)).collect()
}

/// `text`'s characters with a whole hour's ":00" dropped ("at 5:00" is said "at five"); other
/// times keep their minutes ("6:15": "six fifteen").
fn whole_hours(text: &str) -> Vec<char> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let hour = chars[i] == ':'
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1..i + 3) == Some(&['0', '0'][..])
            && chars.get(i + 3).is_none_or(|c| !c.is_alphanumeric());
        if hour {
            i += 3;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Word errors of `hypothesis` against `reference`: (substitutions + insertions + deletions,
/// reference words), the words compared lower-cased and without punctuation only (no numbers or
/// compounds settled: the plain score the speech tests and the beam sweep have always used).
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let words = |s: &str| -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let r = words(reference);
    (edit_distance(&r, &words(hypothesis)), r.len())
}

/// Word errors of `hypothesis` against `reference` (substitutions + insertions + deletions) and
/// the reference's word count, after [`normalize_words`] and with compounds settled: two
/// adjacent words on one side that make a single word of the other ("light house" /
/// "lighthouse") count as that word.
pub fn scored_word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize_words(reference);
    let h = normalize_words(hypothesis);
    let h = join_compounds(h, &r);
    let r = join_compounds(r, &h);
    (edit_distance(&r, &h), r.len())
}

/// Numbers 0..=20 in the other evaluated languages (a transcript may write "8" for "acht").
fn small_number_word(lang: &str, n: usize) -> Option<&'static str> {
    const ES: [&str; 21] = [
        "cero",
        "uno",
        "dos",
        "tres",
        "cuatro",
        "cinco",
        "seis",
        "siete",
        "ocho",
        "nueve",
        "diez",
        "once",
        "doce",
        "trece",
        "catorce",
        "quince",
        "dieciséis",
        "diecisiete",
        "dieciocho",
        "diecinueve",
        "veinte",
    ];
    const DE: [&str; 21] = [
        "null",
        "eins",
        "zwei",
        "drei",
        "vier",
        "fünf",
        "sechs",
        "sieben",
        "acht",
        "neun",
        "zehn",
        "elf",
        "zwölf",
        "dreizehn",
        "vierzehn",
        "fünfzehn",
        "sechzehn",
        "siebzehn",
        "achtzehn",
        "neunzehn",
        "zwanzig",
    ];
    const FR: [&str; 21] = [
        "zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix", "onze",
        "douze", "treize", "quatorze", "quinze", "seize", "dix-sept", "dix-huit", "dix-neuf", "vingt",
    ];
    match lang {
        "es" => ES.get(n).copied(),
        "de" => DE.get(n).copied(),
        "fr" => FR.get(n).copied(),
        _ => None,
    }
}

/// [`scored_word_errors`] for a sentence in `lang` (ISO 639-1): numbers up to twenty written as
/// digits are read as that language's words first ("um 8 Uhr" = "um acht Uhr", French hours
/// "à 10h" = "à dix heures"); larger ones, and
/// every number in a language without such a table, are spelt out in English as before.
pub fn scored_word_errors_in(reference: &str, hypothesis: &str, lang: &str) -> (usize, usize) {
    if lang == "en" {
        return scored_word_errors(reference, hypothesis);
    }
    let localise = |text: &str| -> String {
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric()) {
                let end = (i..chars.len()).find(|&j| !chars[j].is_ascii_digit()).unwrap_or(chars.len());
                let lone = chars.get(end).is_none_or(|c| !c.is_ascii_digit() && *c != ',' && *c != '.')
                    || chars.get(end + 1).is_none_or(|c| !c.is_ascii_digit());
                let digits: String = chars[i..end].iter().collect();
                // French writes the hour as "10h" ("dix heures"), "1h" ("une heure").
                let hour = lang == "fr"
                    && chars.get(end) == Some(&'h')
                    && chars.get(end + 1).is_none_or(|c| !c.is_alphabetic());
                let n: Option<usize> = digits.parse().ok();
                let spoken_hour = match n.filter(|_| hour) {
                    Some(1) => Some("une heure ".to_string()),
                    Some(n) => small_number_word(lang, n).map(|w| format!("{w} heures ")),
                    None => None,
                };
                if let Some(h) = spoken_hour {
                    out.push_str(&h);
                    i = end + 1;
                    continue;
                }
                if let Some(w) = n.filter(|_| lone).and_then(|n| small_number_word(lang, n)) {
                    out.push_str(w);
                    out.push(' ');
                    i = end;
                    continue;
                }
            }
            out.push(chars[i]);
            i += 1;
        }
        out
    };
    scored_word_errors(&localise(reference), &localise(hypothesis))
}

fn join_compounds(words: Vec<String>, other: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        if let Some(next) = words.get(i + 1) {
            let joined = format!("{}{next}", words[i]);
            if other.contains(&joined) {
                out.push(joined);
                i += 2;
                continue;
            }
        }
        out.push(words[i].clone());
        i += 1;
    }
    out
}

/// Levenshtein distance between two sequences.
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev + (x != y) as usize;
            prev = row[j + 1];
            row[j + 1] = sub.min(row[j] + 1).min(prev + 1);
        }
    }
    row[b.len()]
}

/// Character errors of what was read against what was drawn, and the drawn text's length
/// (characters, spaces included): each drawn line against the read line closest to it (text the
/// backdrop itself shows, such as a test pattern's clock, is not held against the reader).
pub fn char_errors(drawn: &[&str], read: &[&str]) -> (usize, usize) {
    let mut errors = 0;
    let mut total = 0;
    for line in drawn {
        let d: Vec<char> = line.chars().collect();
        total += d.len();
        errors += read
            .iter()
            .map(|r| edit_distance(&d, &r.chars().collect::<Vec<_>>()))
            .min()
            .unwrap_or(d.len())
            .min(d.len());
    }
    (errors, total)
}
