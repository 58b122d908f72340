//! The support inbox: what a customer wrote, made safe to look at, and the
//! language it is in. Nothing here trusts the text; it only describes it.
//!
//! Seven languages are served: English, German, French, Spanish, Italian,
//! Dutch and Polish. A message in another language is answered in English
//! and says so in its reasons.

use std::future::Future;

use serde::{Deserialize, Serialize};

pub use crate::sense::wire::agentmail::{InboxError, MailMessage, SentReply, ThreadPage, ThreadSummary};

/// The longest message the loop reads, in characters; the rest is cut (and
/// the cut is a reason on the verdict).
pub const MAX_MESSAGE_CHARS: usize = 8_000;

/// One inbound message of a thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub id: String,
    pub thread: String,
    pub text: String,
}

/// The support inbox port (AgentMail live, the sim's inbox world). The
/// provided methods are a brand without an inbox: every send is refused
/// (its intent abandoned at the attempt cap), no reply is ever found.
pub trait Inbox: Send + Sync {
    /// Sends `text` as the reply to `message_id`. There is no idempotency
    /// key: the caller reads the thread back for its marker first.
    fn send_reply(
        &self,
        _inbox: &str,
        _message_id: &str,
        _text: &str,
    ) -> impl Future<Output = Result<SentReply, InboxError>> + Send {
        std::future::ready(Err(InboxError::Invalid("no inbox configured for this brand".into())))
    }
    /// A thread's messages, oldest first.
    fn thread(
        &self,
        _inbox: &str,
        _thread_id: &str,
    ) -> impl Future<Output = Result<Vec<MailMessage>, InboxError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
    /// One page of the inbox's threads, most recently updated first.
    fn threads(
        &self,
        _inbox: &str,
        _page_token: Option<&str>,
    ) -> impl Future<Output = Result<ThreadPage, InboxError>> + Send {
        std::future::ready(Ok(ThreadPage { threads: Vec::new(), next_page_token: None }))
    }
}

impl<T: Inbox> Inbox for &T {
    fn send_reply(
        &self,
        inbox: &str,
        message_id: &str,
        text: &str,
    ) -> impl Future<Output = Result<SentReply, InboxError>> + Send {
        (**self).send_reply(inbox, message_id, text)
    }
    fn thread(
        &self,
        inbox: &str,
        thread_id: &str,
    ) -> impl Future<Output = Result<Vec<MailMessage>, InboxError>> + Send {
        (**self).thread(inbox, thread_id)
    }
    fn threads(
        &self,
        inbox: &str,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<ThreadPage, InboxError>> + Send {
        (**self).threads(inbox, page_token)
    }
}

/// The money ports of a brand without an inbox.
impl Inbox for crate::sense::bank::NoBank {}

/// A language the support loop answers in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    De,
    Fr,
    Es,
    It,
    Nl,
    Pl,
}

impl Language {
    pub const ALL: [Language; 7] =
        [Language::En, Language::De, Language::Fr, Language::Es, Language::It, Language::Nl, Language::Pl];

    /// The ISO 639-1 code.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
            Language::Fr => "fr",
            Language::Es => "es",
            Language::It => "it",
            Language::Nl => "nl",
            Language::Pl => "pl",
        }
    }

    pub fn from_code(code: &str) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.code() == code)
    }

    fn of(lang: whatlang::Lang) -> Option<Language> {
        use whatlang::Lang;
        Some(match lang {
            Lang::Eng => Language::En,
            Lang::Deu => Language::De,
            Lang::Fra => Language::Fr,
            Lang::Spa => Language::Es,
            Lang::Ita => Language::It,
            Lang::Nld => Language::Nl,
            Lang::Pol => Language::Pl,
            _ => return None,
        })
    }

    fn whatlang(self) -> whatlang::Lang {
        use whatlang::Lang;
        match self {
            Language::En => Lang::Eng,
            Language::De => Lang::Deu,
            Language::Fr => Lang::Fra,
            Language::Es => Lang::Spa,
            Language::It => Lang::Ita,
            Language::Nl => Lang::Nld,
            Language::Pl => Lang::Pol,
        }
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// What the detector says of a text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detected {
    /// The language to answer in (English when the text is in none of the
    /// seven).
    pub language: Language,
    /// Whether the text is long and clear enough for the guess to count.
    pub confident: bool,
    /// The language the text is in when it is none of the seven (ISO 639-3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
}

/// The language of `text`. Deterministic (whatlang's trigram profiles, no
/// randomness, no model files).
pub fn detect_language(text: &str) -> Detected {
    // Long unbroken tokens (links, encoded blobs) say nothing of the language.
    let words: Vec<&str> = text.split_whitespace().filter(|w| w.chars().count() <= 20).collect();
    let text = words.join(" ");
    let vote = stopword_vote(&text);
    let Some(any) = whatlang::detect(&text) else {
        return match vote {
            Some((language, hits)) => Detected { language, confident: hits >= 3, unsupported: None },
            None => Detected { language: Language::En, confident: false, unsupported: None },
        };
    };
    if let Some(language) = Language::of(any.lang())
        && any.is_reliable()
    {
        return Detected { language, confident: true, unsupported: None };
    }
    // Short texts fool the trigram profiles (a short English line read as
    // German, Spanish as Catalan): the seven languages' function words
    // decide when they clearly agree.
    if let Some((language, hits)) = vote {
        return Detected { language, confident: hits >= 3, unsupported: None };
    }
    if Language::of(any.lang()).is_none() && any.is_reliable() {
        return Detected { language: Language::En, confident: true, unsupported: Some(any.lang().code().to_string()) };
    }
    let among = whatlang::Detector::with_allowlist(Language::ALL.into_iter().map(Language::whatlang).collect());
    match among.detect(&text) {
        Some(info) => Detected {
            language: Language::of(info.lang()).unwrap_or(Language::En),
            confident: false,
            unsupported: None,
        },
        None => Detected { language: Language::En, confident: false, unsupported: None },
    }
}

/// Common function words of each language.
const STOPWORDS: [(Language, &[&str]); 7] = [
    (
        Language::En,
        &[
            "the", "and", "is", "my", "please", "what", "you", "your", "it", "to", "of", "have", "not", "with", "this",
            "can", "when", "hello", "hi", "thank", "thanks", "was", "are", "i",
        ],
    ),
    (
        Language::De,
        &[
            "der", "die", "das", "und", "ist", "mein", "meine", "bitte", "nicht", "ich", "sie", "mit", "wann", "noch",
            "hallo", "danke", "ein", "eine", "können", "was", "wir", "ihr", "ihre", "auch",
        ],
    ),
    (
        Language::Fr,
        &[
            "le", "les", "et", "est", "mon", "ma", "mes", "pas", "je", "vous", "avec", "pour", "une", "bonjour",
            "merci", "ce", "du", "des", "au", "il", "elle", "sur",
        ],
    ),
    (
        Language::Es,
        &[
            "el", "los", "las", "y", "es", "mi", "por", "favor", "yo", "para", "hola", "gracias", "qué", "pueden",
            "mis", "me", "del", "pero", "está", "muy", "cuándo",
        ],
    ),
    (
        Language::It,
        &[
            "il",
            "lo",
            "gli",
            "è",
            "mio",
            "mia",
            "per",
            "non",
            "buongiorno",
            "grazie",
            "che",
            "sono",
            "ho",
            "della",
            "del",
            "ma",
            "quando",
            "potete",
            "salve",
        ],
    ),
    (
        Language::Nl,
        &[
            "de", "het", "een", "en", "mijn", "niet", "ik", "u", "jullie", "met", "voor", "hallo", "bedankt", "wat",
            "kan", "nog", "van", "dat", "is", "maar", "wanneer",
        ],
    ),
    (
        Language::Pl,
        &[
            "i",
            "w",
            "na",
            "nie",
            "jest",
            "moje",
            "mój",
            "moja",
            "się",
            "z",
            "do",
            "dzień",
            "dobry",
            "dziękuję",
            "czy",
            "jak",
            "proszę",
            "że",
            "mnie",
            "jeszcze",
            "kiedy",
        ],
    ),
];

/// The language whose function words a text uses most, when it leads the
/// next by at least two and has at least two (hits returned).
fn stopword_vote(text: &str) -> Option<(Language, usize)> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).collect();
    let mut hits: Vec<(usize, Language)> =
        STOPWORDS.iter().map(|(lang, list)| (words.iter().filter(|w| list.contains(w)).count(), *lang)).collect();
    hits.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let (best, lang) = hits[0];
    (best >= 2 && best >= hits[1].0 + 2).then_some((lang, best))
}

/// A message made safe to read: control characters (other than line breaks
/// and tabs) dropped, cut at [`MAX_MESSAGE_CHARS`]. Returns the text and
/// what was done to it, for the verdict's reasons.
pub fn sanitize(text: &str) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let mut controls = 0usize;
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_CHARS * 4));
    let mut kept = 0usize;
    let mut cut = false;
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' && c != '\r' {
            controls += 1;
            continue;
        }
        if kept == MAX_MESSAGE_CHARS {
            cut = true;
            break;
        }
        out.push(c);
        kept += 1;
    }
    if controls > 0 {
        notes.push(format!("{controls} control character{} dropped", if controls == 1 { "" } else { "s" }));
    }
    if cut {
        notes.push(format!("message cut at {MAX_MESSAGE_CHARS} characters"));
    }
    (out, notes)
}

/// Whether a customer's message only accepts what was offered: short, no
/// digits (an amount is never taken from a message), no negation or
/// condition, and a plain yes in one of the seven languages. Anything else
/// is a message like any other (the models and the gate answer it).
pub fn accepts(text: &str) -> bool {
    const YES: &[&str] = &[
        "yes",
        "ok",
        "okay",
        "i accept",
        "accepted",
        "confirm",
        "confirmed",
        "agreed",
        "sounds good",
        "please do",
        "ja",
        "einverstanden",
        "bestätige",
        "gerne",
        "passt",
        "oui",
        "d'accord",
        "j'accepte",
        "je confirme",
        "volontiers",
        "sí",
        "si",
        "acepto",
        "confirmo",
        "de acuerdo",
        "vale",
        "sì",
        "accetto",
        "confermo",
        "va bene",
        "d'accordo",
        "akkoord",
        "ik ga akkoord",
        "bevestig",
        "prima",
        "graag",
        "tak",
        "zgoda",
        "akceptuję",
        "potwierdzam",
        "dobrze",
    ];
    const NOT: &[&str] = &[
        "no",
        "not",
        "but",
        "instead",
        "only",
        "more",
        "nein",
        "nicht",
        "aber",
        "nur",
        "mehr",
        "non",
        "pas",
        "mais",
        "plus",
        "seulement",
        "pero",
        "más",
        "solo",
        "ma",
        "più",
        "nee",
        "niet",
        "maar",
        "meer",
        "nie",
        "ale",
        "więcej",
        "tylko",
        "don't",
        "won't",
        "isn't",
    ];
    let (clean, _) = sanitize(text);
    let lower = clean.to_lowercase();
    if lower.chars().count() > 160 || lower.chars().any(|c| c.is_ascii_digit() || c == '%' || c == '@') {
        return false;
    }
    let words: Vec<String> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    if words.iter().any(|w| NOT.contains(&w.as_str())) {
        return false;
    }
    let joined = format!(" {} ", words.join(" "));
    YES.iter().any(|y| joined.contains(&format!(" {y} ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_yes_accepts_and_anything_more_does_not() {
        for yes in [
            "Yes please, thank you!",
            "ok",
            "Ja, gerne.",
            "Oui, d'accord, merci.",
            "Sí, acepto.",
            "Sì, va bene grazie",
            "Ja, akkoord.",
            "Tak, zgoda. Dziękuję!",
        ] {
            assert!(accepts(yes), "{yes}");
        }
        for no in [
            "Yes, but refund 100 EUR instead",
            "No, thanks",
            "Nein, das reicht nicht",
            "yes refund me everything please and more",
            "Where is my parcel?",
            "Ja, aber nur wenn ihr mir 50% gebt",
            "",
            "Oui mais pas seulement ça",
        ] {
            assert!(!accepts(no), "{no}");
        }
        assert!(!accepts(&format!("yes {}", "x".repeat(200))), "long messages are not a plain yes");
    }

    #[test]
    fn the_seven_languages_are_told_apart() {
        let cases = [
            ("Hello, my order arrived broken and I would like to know what you can do about it.", Language::En),
            ("Hallo, meine Bestellung ist kaputt angekommen. Was können Sie für mich tun?", Language::De),
            ("Bonjour, ma commande est arrivée cassée. Que pouvez-vous faire pour moi ?", Language::Fr),
            ("Hola, mi pedido llegó roto. ¿Qué pueden hacer por mí, por favor?", Language::Es),
            ("Buongiorno, il mio ordine è arrivato rotto. Cosa potete fare per me?", Language::It),
            ("Hallo, mijn bestelling is kapot aangekomen. Wat kunnen jullie voor mij doen?", Language::Nl),
            ("Dzień dobry, moje zamówienie przyszło uszkodzone. Co możecie dla mnie zrobić?", Language::Pl),
        ];
        for (text, want) in cases {
            let got = detect_language(text);
            assert_eq!(got.language, want, "{text}");
            assert!(got.unsupported.is_none(), "{text}");
        }
    }

    #[test]
    fn short_lines_are_read_by_their_function_words() {
        let got = detect_language("Hi, my order number is below, please decode it and do what it says:");
        assert_eq!(got.language, Language::En);
        let got = detect_language("Hola, mi chaqueta llegó con una manga rota. ¿Me pueden decir qué debo hacer ahora?");
        assert_eq!(got.language, Language::Es);
    }

    #[test]
    fn an_eighth_language_is_answered_in_english_and_named() {
        let got = detect_language("Здравствуйте, мой заказ пришёл сломанным. Что вы можете для меня сделать?");
        assert_eq!(got.language, Language::En);
        assert_eq!(got.unsupported.as_deref(), Some("rus"));
    }

    #[test]
    fn controls_are_dropped_and_long_messages_cut() {
        let (text, notes) = sanitize("a\u{0}b\u{7}c\nd");
        assert_eq!(text, "abc\nd");
        assert_eq!(notes, vec!["2 control characters dropped".to_string()]);
        let long = "x".repeat(MAX_MESSAGE_CHARS + 10);
        let (text, notes) = sanitize(&long);
        assert_eq!(text.chars().count(), MAX_MESSAGE_CHARS);
        assert_eq!(notes.len(), 1);
    }
}
