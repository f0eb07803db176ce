//! The passphrase dialog shown before a run on an encrypted store: masked input, Enter to
//! unlock, Esc to give up. The view knows nothing of what the passphrase opens: it hands the
//! text to the glue ([`PromptOutcome::Submit`]) and shows what the glue says back
//! ([`PassphrasePrompt::set_error`], [`PassphrasePrompt::set_busy`]). The text is wiped from
//! memory when it is dropped or cleared.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use zeroize::Zeroizing;

use crate::theme::Theme;

/// At most this many mask characters are drawn (the length of a long passphrase is not shown).
const MASK_MAX: usize = 24;

/// What a key did to the dialog.
#[derive(Debug, PartialEq, Eq)]
pub enum PromptOutcome {
    /// Enter: the text typed (wiped on drop).
    Submit(Zeroizing<String>),
    /// Esc or Ctrl-C: no passphrase.
    Cancel,
}

/// The dialog's state.
#[derive(Debug)]
pub struct PassphrasePrompt {
    store: String,
    input: Zeroizing<String>,
    error: Option<String>,
    busy: bool,
}

impl PassphrasePrompt {
    /// A dialog asking for the passphrase of `store` (a name or path, shown as it is).
    pub fn new(store: impl Into<String>) -> Self {
        PassphrasePrompt {
            store: store.into(),
            input: Zeroizing::new(String::new()),
            error: None,
            busy: false,
        }
    }

    /// Handles one key: typing, Backspace, Ctrl-U (clear), Enter (submit: the input is handed
    /// over and the field emptied), Esc or Ctrl-C (cancel). Keys are ignored while busy.
    pub fn handle_key(&mut self, k: KeyEvent) -> Option<PromptOutcome> {
        if k.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Esc => return Some(PromptOutcome::Cancel),
            KeyCode::Char('c') if ctrl => return Some(PromptOutcome::Cancel),
            _ if self.busy => {}
            KeyCode::Char('u') if ctrl => self.input.clear(),
            KeyCode::Char(c) if !ctrl => {
                self.input.push(c);
                self.error = None;
            }
            KeyCode::Backspace => {
                self.input.pop();
            }
            KeyCode::Enter if !self.input.is_empty() => {
                let text = std::mem::replace(&mut self.input, Zeroizing::new(String::new()));
                return Some(PromptOutcome::Submit(text));
            }
            _ => {}
        }
        None
    }

    /// Shows a problem under the field (e.g. "wrong passphrase, try again") and ends busy.
    pub fn set_error(&mut self, message: impl Into<String>) {
        self.error = Some(message.into());
        self.busy = false;
    }

    /// While busy (the glue is checking the passphrase) the dialog says so and takes no input.
    pub fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    /// The masked field: one `•` per character typed, at most 24.
    pub fn masked(&self) -> String {
        "•".repeat(self.input.chars().count().min(MASK_MAX))
    }
}

/// Draws the dialog centred in `area`.
pub fn render(frame: &mut Frame<'_>, area: Rect, p: &PassphrasePrompt, t: &Theme) {
    let mut lines = vec![
        Line::raw("The network store is encrypted:"),
        Line::styled(p.store.clone(), t.title()),
        Line::raw(""),
        Line::from(vec![
            Span::raw("Passphrase: "),
            Span::styled(
                format!("{:<width$}", p.masked(), width = MASK_MAX),
                t.selected(),
            ),
        ]),
        Line::raw(""),
    ];
    if p.busy {
        lines.push(Line::styled("Unlocking…", t.dim()));
    } else if let Some(e) = &p.error {
        lines.push(Line::styled(e.clone(), t.error()));
    } else {
        lines.push(Line::raw(""));
    }
    lines.push(Line::from(vec![
        Span::styled("Enter", t.key()),
        Span::raw(" unlock · "),
        Span::styled("Esc", t.key()),
        Span::raw(" quit without running"),
    ]));
    let w = lines.iter().map(|l| l.width()).max().unwrap_or(40) as u16 + 4;
    let h = lines.len() as u16 + 2;
    let rect = crate::ui::centered(area, w.max(44), h);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .block(
                Block::bordered()
                    .title(" Passphrase ")
                    .border_style(t.dialog())
                    .padding(ratatui::widgets::Padding::horizontal(1)),
            ),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn screen(p: &PassphrasePrompt) -> String {
        let mut term = Terminal::new(TestBackend::new(70, 14)).unwrap();
        term.draw(|f| render(f, f.area(), p, &Theme::monochrome()))
            .unwrap();
        let buf = term.backend().buffer().clone();
        let mut s = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                s.push_str(buf[(x, y)].symbol());
            }
            s.push('\n');
        }
        s
    }

    #[test]
    fn typing_is_masked_and_enter_hands_the_text_over() {
        let mut p = PassphrasePrompt::new("/srv/hq.db");
        for c in "s3cret pass".chars() {
            assert_eq!(p.handle_key(key(KeyCode::Char(c))), None);
        }
        p.handle_key(key(KeyCode::Backspace));
        let s = screen(&p);
        assert!(s.contains("/srv/hq.db"), "{s}");
        assert!(s.contains(&"•".repeat(10)), "{s}");
        assert!(!s.contains("s3cret"), "{s}");
        match p.handle_key(key(KeyCode::Enter)) {
            Some(PromptOutcome::Submit(t)) => assert_eq!(t.as_str(), "s3cret pas"),
            other => panic!("{other:?}"),
        }
        // The field is empty again; Enter on nothing does nothing.
        assert_eq!(p.masked(), "");
        assert_eq!(p.handle_key(key(KeyCode::Enter)), None);
    }

    #[test]
    fn errors_busy_and_cancel() {
        let mut p = PassphrasePrompt::new("hq.db");
        p.handle_key(key(KeyCode::Char('x')));
        p.set_busy(true);
        assert!(screen(&p).contains("Unlocking"));
        // No typing while busy.
        p.handle_key(key(KeyCode::Char('y')));
        assert_eq!(p.masked(), "•");
        p.set_error("wrong passphrase, try again");
        assert!(screen(&p).contains("wrong passphrase, try again"));
        p.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert_eq!(p.masked(), "");
        assert_eq!(
            p.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(PromptOutcome::Cancel)
        );
        assert_eq!(p.handle_key(key(KeyCode::Esc)), Some(PromptOutcome::Cancel));
        // A long passphrase does not show its length.
        let mut long = PassphrasePrompt::new("hq.db");
        for _ in 0..40 {
            long.handle_key(key(KeyCode::Char('a')));
        }
        assert_eq!(long.masked().chars().count(), MASK_MAX);
    }
}
