//! The words of the survey pages around the instrument's own texts
//! (buttons, progress, errors, friendly refusals), in the languages
//! Commonlab ships: English and Spanish. An instrument in another language
//! gets its own texts in that language and these in English (the page's
//! `lang` attribute marks each part).

use serde::Serialize;

/// The languages these texts exist in; the first is the fallback.
pub const UI_LANGUAGES: &[&str] = &["en", "es"];

/// Every word of the page chrome, in one language.
#[derive(Debug, Serialize)]
pub struct Ui {
    pub lang: &'static str,
    pub language: &'static str,
    pub next: &'static str,
    pub finish: &'static str,
    /// "Page {n} of {total}".
    pub progress: &'static str,
    pub consent_heading: &'static str,
    pub consent_question: &'static str,
    pub accept: &'static str,
    pub decline: &'static str,
    pub continue_: &'static str,
    pub error_summary: &'static str,
    pub error_prefix: &'static str,
    pub error_title: &'static str,
    pub optional: &'static str,
    pub your_answer: &'static str,
    pub other: &'static str,
    /// "Position {n}".
    pub position: &'static str,
    pub choose: &'static str,
    pub rank_hint: &'static str,
    pub multiple_hint: &'static str,
    /// "At most {max} characters".
    pub text_hint: &'static str,
    /// "A number from {min} to {max}".
    pub number_hint: &'static str,
    /// "0 means {low}, 10 means {high}".
    pub nps_hint: &'static str,
    pub leave_hint: &'static str,
    pub answer_consent: &'static str,
}

pub const EN: Ui = Ui {
    lang: "en",
    language: "Language",
    next: "Save and continue",
    finish: "Send my answers",
    progress: "Page {n} of {total}",
    consent_heading: "Before you start",
    consent_question: "Do you agree to take part?",
    accept: "Yes, I agree to take part",
    decline: "No, I do not want to take part",
    continue_: "Continue",
    error_summary: "There is a problem",
    error_prefix: "Error:",
    error_title: "Error",
    optional: "(optional)",
    your_answer: "Your answer",
    other: "Other (please say what)",
    position: "Position {n}",
    choose: "Choose…",
    rank_hint: "Put every option in order, the one you prefer most first.",
    multiple_hint: "Choose all that apply.",
    text_hint: "At most {max} characters.",
    number_hint: "A number from {min} to {max}.",
    nps_hint: "0 means {low}, 10 means {high}.",
    leave_hint:
        "Your answers are saved page by page: you can leave and come back with the same link.",
    answer_consent: "Choose whether you agree to take part",
};

pub const ES: Ui = Ui {
    lang: "es",
    language: "Idioma",
    next: "Guardar y continuar",
    finish: "Enviar mis respuestas",
    progress: "Página {n} de {total}",
    consent_heading: "Antes de empezar",
    consent_question: "¿Aceptas participar?",
    accept: "Sí, acepto participar",
    decline: "No, no quiero participar",
    continue_: "Continuar",
    error_summary: "Hay un problema",
    error_prefix: "Error:",
    error_title: "Error",
    optional: "(opcional)",
    your_answer: "Tu respuesta",
    other: "Otra (indica cuál)",
    position: "Posición {n}",
    choose: "Elige…",
    rank_hint: "Ordena todas las opciones, primero la que más prefieras.",
    multiple_hint: "Elige todas las que correspondan.",
    text_hint: "Como máximo {max} caracteres.",
    number_hint: "Un número de {min} a {max}.",
    nps_hint: "0 significa {low}, 10 significa {high}.",
    leave_hint:
        "Tus respuestas se guardan página a página: puedes salir y volver con el mismo enlace.",
    answer_consent: "Indica si aceptas participar",
};

/// The chrome for `lang` (by primary subtag), English otherwise.
pub fn ui(lang: &str) -> &'static Ui {
    match primary(lang).as_str() {
        "es" => &ES,
        _ => &EN,
    }
}

fn primary(tag: &str) -> String {
    tag.split('-').next().unwrap_or("").to_ascii_lowercase()
}

/// A language's own name, for the language links (the tag itself for
/// languages not listed).
pub fn language_name(tag: &str) -> String {
    let name = match primary(tag).as_str() {
        "ar" => "العربية",
        "ca" => "Català",
        "de" => "Deutsch",
        "en" => "English",
        "es" => "Español",
        "eu" => "Euskara",
        "fa" => "فارسی",
        "fr" => "Français",
        "gl" => "Galego",
        "he" => "עברית",
        "it" => "Italiano",
        "nl" => "Nederlands",
        "pt" => "Português",
        "ur" => "اردو",
        _ => return tag.to_string(),
    };
    name.to_string()
}

/// The message for an answer error `code` of `validate_page` (or the
/// page's own `type` error for what does not parse), in `lang`; `args`
/// fill `{min}`, `{max}`, `{step}`, `{n}`.
pub fn answer_error(lang: &str, code: &str, args: &[(&str, String)]) -> String {
    let es = primary(lang) == "es";
    let text = match (code, es) {
        ("required", false) => "Answer this question",
        ("required", true) => "Responde esta pregunta",
        ("number", false) => "Enter a number, like 12 or 2.5",
        ("number", true) => "Escribe un número, como 12 o 2.5",
        ("range", false) => "Enter a number from {min} to {max}",
        ("range", true) => "Escribe un número de {min} a {max}",
        ("choose", false) => "Choose one of the answers",
        ("choose", true) => "Elige una de las respuestas",
        ("step", false) => "Enter a number from {min} to {max} in steps of {step}",
        ("step", true) => "Escribe un número de {min} a {max} en pasos de {step}",
        ("too_long", false) => "Use at most {max} characters (you wrote {n})",
        ("too_long", true) => "Usa como máximo {max} caracteres (has escrito {n})",
        ("duplicate", false) => "Choose each option only once",
        ("duplicate", true) => "Elige cada opción solo una vez",
        ("incomplete", false) => "Put every option in a position",
        ("incomplete", true) => "Pon cada opción en una posición",
        ("not_shown", false) => "This question does not apply given an earlier answer",
        ("not_shown", true) => "Esta pregunta no corresponde según una respuesta anterior",
        (_, false) => "Choose one of the answers given",
        (_, true) => "Elige una de las respuestas dadas",
    };
    fill(text, args)
}

/// `template` with each `{name}` replaced.
pub fn fill(template: &str, args: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (name, value) in args {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// A friendly refusal or notice: heading and explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Not a survey link at all (cut or mistyped).
    Malformed,
    /// The signature does not match.
    Tampered,
    Expired,
    /// The campaign of the link does not exist (any more).
    Unknown,
    NotOpen,
    Closed,
    /// Answered already: nothing more is taken.
    Completed,
    /// The form was not sent from this survey's page.
    Forbidden,
    RateLimited,
    Unavailable,
    Broken,
    Thanks,
    Declined,
}

/// The heading and text of `notice` in `lang`.
pub fn notice(lang: &str, notice: Notice) -> (&'static str, &'static str) {
    let es = primary(lang) == "es";
    match (notice, es) {
        (Notice::Malformed, false) => ("This link does not work", "The link is incomplete or mistyped. Open it again from the message you were sent, or copy all of it into the address bar."),
        (Notice::Malformed, true) => ("Este enlace no funciona", "El enlace está incompleto o mal escrito. Ábrelo de nuevo desde el mensaje que recibiste, o copia el enlace completo en la barra de direcciones."),
        (Notice::Tampered, false) => ("This link does not work", "The link has been changed since it was sent. Open it again from the message you were sent."),
        (Notice::Tampered, true) => ("Este enlace no funciona", "El enlace ha cambiado desde que se envió. Ábrelo de nuevo desde el mensaje que recibiste."),
        (Notice::Expired, false) => ("This link has expired", "Personal survey links work for a limited time and this one is too old. If you still want to answer, ask the research team for a new link."),
        (Notice::Expired, true) => ("Este enlace ha caducado", "Los enlaces personales a la encuesta funcionan durante un tiempo limitado y este ya no es válido. Si aún quieres responder, pide un enlace nuevo al equipo investigador."),
        (Notice::Unknown, false) => ("This survey is not available", "The survey this link points to does not exist. Open it again from the message you were sent."),
        (Notice::Unknown, true) => ("Esta encuesta no está disponible", "La encuesta de este enlace no existe. Ábrelo de nuevo desde el mensaje que recibiste."),
        (Notice::NotOpen, false) => ("This survey has not opened yet", "Please come back later with the same link."),
        (Notice::NotOpen, true) => ("Esta encuesta aún no está abierta", "Vuelve más tarde con el mismo enlace."),
        (Notice::Closed, false) => ("This survey has closed", "Answers are no longer collected. Thank you for your interest."),
        (Notice::Closed, true) => ("Esta encuesta está cerrada", "Ya no se recogen respuestas. Gracias por tu interés."),
        (Notice::Completed, false) => ("You have already answered this survey", "Your answers were saved and cannot be changed from this link. Thank you for taking part."),
        (Notice::Completed, true) => ("Ya has respondido esta encuesta", "Tus respuestas se guardaron y no se pueden cambiar desde este enlace. Gracias por participar."),
        (Notice::Forbidden, false) => ("This form could not be accepted", "It was not sent from this survey's own page. Open your link again and answer there; nothing was saved from this form."),
        (Notice::Forbidden, true) => ("No se pudo aceptar este formulario", "No se envió desde la página de esta encuesta. Abre tu enlace de nuevo y responde allí; no se guardó nada de este formulario."),
        (Notice::RateLimited, false) => ("Too many requests", "Please wait a moment, then try again. Nothing you answered is lost."),
        (Notice::RateLimited, true) => ("Demasiadas solicitudes", "Espera un momento y vuelve a intentarlo. No se pierde nada de lo que has respondido."),
        (Notice::Unavailable, false) => ("The survey is briefly unavailable", "Please try again in a moment. Your answers so far are saved."),
        (Notice::Unavailable, true) => ("La encuesta no está disponible por un momento", "Vuelve a intentarlo en un momento. Tus respuestas hasta ahora están guardadas."),
        (Notice::Broken, false) => ("Something went wrong", "The survey could not be shown. The research team has been told; please try again later."),
        (Notice::Broken, true) => ("Algo ha fallado", "No se pudo mostrar la encuesta. Se ha avisado al equipo investigador; vuelve a intentarlo más tarde."),
        (Notice::Thanks, false) => ("Thank you", "Your answers have been saved. You can close this page."),
        (Notice::Thanks, true) => ("Gracias", "Tus respuestas se han guardado. Puedes cerrar esta página."),
        (Notice::Declined, false) => ("You chose not to take part", "Only your choice was stored, nothing else. If you change your mind, you can still take part."),
        (Notice::Declined, true) => ("Has elegido no participar", "Solo se ha guardado tu decisión, nada más. Si cambias de opinión, todavía puedes participar."),
    }
}

/// The language of a page shown without an instrument (a refused link):
/// the first of `accept` this module has texts in, else English.
pub fn ui_language(accept: &[&str]) -> &'static str {
    accept
        .iter()
        .find_map(|t| {
            let p = primary(t);
            UI_LANGUAGES.iter().find(|l| **l == p).copied()
        })
        .unwrap_or(UI_LANGUAGES[0])
}
