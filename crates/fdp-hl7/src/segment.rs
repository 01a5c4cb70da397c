//! Borrowed views of segments, fields, repetitions, components and
//! subcomponents.
//!
//! Every view is a `&str` into the message text plus the delimiters, so
//! walking a message allocates nothing. Splitting below the field level is
//! done on demand: most consumers read a handful of fields, so precomputing
//! component offsets for every field would cost more than it saves.

use std::borrow::Cow;
use std::fmt;

use crate::escape::unescape;
use crate::Delimiters;

/// The location of one segment in the message text, and of its field
/// separators in the message's shared separator table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentSpan {
    /// The segment id, kept here so lookups by id compare three bytes
    /// without touching the text.
    pub(crate) id: [u8; 3],
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) seps_start: u32,
    pub(crate) seps_end: u32,
}

/// One segment of a message, such as `PID|1||...`.
///
/// ```
/// use fdp_hl7::Message;
///
/// let msg = Message::parse("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|42|P|2.4\rPID|1||123^^^H^MR~456^^^NHS^NH||Smith^John\r").unwrap();
/// let pid = msg.segment("PID").unwrap();
/// assert_eq!(pid.id(), "PID");
/// assert_eq!(pid.index(), 2);
/// assert_eq!(pid.field_count(), 5);
/// let ids = pid.field(3).unwrap();
/// assert_eq!(ids.repetition_count(), 2);
/// assert_eq!(ids.repetition(2).unwrap().component(4).unwrap().as_str(), "NHS");
/// assert_eq!(pid.field(5).unwrap().component(2).unwrap().as_str(), "John");
/// assert!(pid.field(6).is_none());
/// ```
#[derive(Clone, Copy)]
pub struct Segment<'m> {
    pub(crate) text: &'m str,
    pub(crate) span: SegmentSpan,
    /// Positions (in `text`) of this segment's field separators.
    pub(crate) seps: &'m [u32],
    pub(crate) delims: Delimiters,
    pub(crate) index: usize,
}

impl<'m> Segment<'m> {
    /// The three-character segment id, e.g. `PID`.
    pub fn id(&self) -> &'m str {
        let start = self.span.start as usize;
        &self.text[start..start + 3]
    }

    /// 1-based position of this segment in the message (MSH is 1).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The raw text of the segment, without its terminator.
    pub fn as_str(&self) -> &'m str {
        &self.text[self.span.start as usize..self.span.end as usize]
    }

    /// The delimiters of the message this segment belongs to.
    pub fn delimiters(&self) -> Delimiters {
        self.delims
    }

    fn is_msh(&self) -> bool {
        self.span.id == *b"MSH"
    }

    /// The number of the last field present, in HL7 numbering. Fields after
    /// it are absent; trailing empty fields that the sender wrote count.
    pub fn field_count(&self) -> usize {
        let n = self.seps.len();
        if self.is_msh() && n > 0 {
            n + 1
        } else {
            n
        }
    }

    /// Field `n` in HL7 numbering (1-based; for MSH, field 1 is the field
    /// separator itself and field 2 the encoding characters, so MSH-9 is
    /// `field(9)`). `None` for field 0 and for fields past the last present.
    pub fn field(&self, n: usize) -> Option<Field<'m>> {
        let is_msh = self.is_msh();
        let (j, literal) = match (is_msh, n) {
            (_, 0) => return None,
            (true, 1) => {
                let at = *self.seps.first()? as usize;
                return Some(Field {
                    raw: &self.text[at..at + 1],
                    delims: self.delims,
                    literal: true,
                });
            }
            (true, 2) => (0, true),
            (true, n) => (n - 2, false),
            (false, n) => (n - 1, false),
        };
        let start = *self.seps.get(j)? as usize + 1;
        let end = match self.seps.get(j + 1) {
            Some(&e) => e as usize,
            None => self.span.end as usize,
        };
        Some(Field {
            raw: &self.text[start..end],
            delims: self.delims,
            literal,
        })
    }

    /// All fields in order, starting at field 1.
    pub fn fields(self) -> impl Iterator<Item = Field<'m>> + 'm {
        (1..=self.field_count()).filter_map(move |n| self.field(n))
    }
}

impl fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("index", &self.index)
            .field("text", &self.as_str())
            .finish()
    }
}

impl fmt::Display for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Splits on one delimiter byte; with no delimiter (MSH-1 and MSH-2, whose
/// text is made of delimiters) yields the whole text once.
#[derive(Debug, Clone)]
struct Parts<'m> {
    rest: Option<&'m str>,
    sep: Option<u8>,
}

impl<'m> Iterator for Parts<'m> {
    type Item = &'m str;

    fn next(&mut self) -> Option<&'m str> {
        let s = self.rest?;
        // Values are short (a few bytes to a few dozen), where a plain scan
        // beats the setup cost of a vectorised search.
        let found = self.sep.and_then(|sep| s.bytes().position(|b| b == sep));
        match found {
            Some(i) => {
                self.rest = Some(&s[i + 1..]);
                Some(&s[..i])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

fn count_parts(s: &str, sep: Option<u8>) -> usize {
    match sep {
        Some(b) => 1 + s.bytes().filter(|&c| c == b).count(),
        None => 1,
    }
}

macro_rules! value_common {
    ($ty:ident) => {
        impl<'m> $ty<'m> {
            /// The raw text, with escape sequences still in place.
            pub fn as_str(&self) -> &'m str {
                self.raw
            }

            /// The text with escape sequences decoded (see [`unescape`](crate::unescape)).
            /// Borrowed when there is nothing to decode.
            pub fn unescaped(&self) -> Cow<'m, str> {
                if self.literal {
                    Cow::Borrowed(self.raw)
                } else {
                    unescape(self.raw, &self.delims)
                }
            }

            /// True when the value is empty (not sent).
            pub fn is_empty(&self) -> bool {
                self.raw.is_empty()
            }

            /// True for the HL7 explicit null `""`, which asks the receiver to
            /// delete the stored value rather than leave it unchanged.
            pub fn is_null(&self) -> bool {
                self.raw == "\"\""
            }
        }

        impl fmt::Display for $ty<'_> {
            /// Writes the raw text.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.raw)
            }
        }

        impl PartialEq<str> for $ty<'_> {
            fn eq(&self, other: &str) -> bool {
                self.raw == other
            }
        }

        impl PartialEq<&str> for $ty<'_> {
            fn eq(&self, other: &&str) -> bool {
                self.raw == *other
            }
        }
    };
}

macro_rules! parts_iter {
    ($name:ident, $item:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $name<'m> {
            parts: Parts<'m>,
            delims: Delimiters,
            literal: bool,
        }

        impl<'m> Iterator for $name<'m> {
            type Item = $item<'m>;

            fn next(&mut self) -> Option<$item<'m>> {
                let raw = self.parts.next()?;
                Some($item {
                    raw,
                    delims: self.delims,
                    literal: self.literal,
                })
            }
        }
    };
}

/// One field of a segment. May hold several repetitions.
#[derive(Debug, Clone, Copy)]
pub struct Field<'m> {
    raw: &'m str,
    delims: Delimiters,
    /// MSH-1 and MSH-2 consist of delimiters and must never be split or
    /// unescaped.
    literal: bool,
}

/// One repetition of a field.
#[derive(Debug, Clone, Copy)]
pub struct Repetition<'m> {
    raw: &'m str,
    delims: Delimiters,
    literal: bool,
}

/// One component of a repetition.
#[derive(Debug, Clone, Copy)]
pub struct Component<'m> {
    raw: &'m str,
    delims: Delimiters,
    literal: bool,
}

/// One subcomponent of a component.
#[derive(Debug, Clone, Copy)]
pub struct Subcomponent<'m> {
    raw: &'m str,
    delims: Delimiters,
    literal: bool,
}

value_common!(Field);
value_common!(Repetition);
value_common!(Component);
value_common!(Subcomponent);

parts_iter!(
    Repetitions,
    Repetition,
    "Iterator over the repetitions of a field."
);
parts_iter!(
    Components,
    Component,
    "Iterator over the components of a repetition."
);
parts_iter!(
    Subcomponents,
    Subcomponent,
    "Iterator over the subcomponents of a component."
);

impl<'m> Field<'m> {
    fn sep(&self, b: u8) -> Option<u8> {
        (!self.literal).then_some(b)
    }

    /// The repetitions of this field. An empty field has one, empty,
    /// repetition.
    pub fn repetitions(&self) -> Repetitions<'m> {
        Repetitions {
            parts: Parts {
                rest: Some(self.raw),
                sep: self.sep(self.delims.repetition),
            },
            delims: self.delims,
            literal: self.literal,
        }
    }

    /// Repetition `n` (1-based).
    pub fn repetition(&self, n: usize) -> Option<Repetition<'m>> {
        self.repetitions().nth(n.checked_sub(1)?)
    }

    /// How many repetitions the field has (at least 1).
    pub fn repetition_count(&self) -> usize {
        count_parts(self.raw, self.sep(self.delims.repetition))
    }

    /// Component `n` (1-based) of the first repetition.
    pub fn component(&self, n: usize) -> Option<Component<'m>> {
        self.repetitions().next()?.component(n)
    }
}

impl<'m> Repetition<'m> {
    /// The components of this repetition.
    pub fn components(&self) -> Components<'m> {
        Components {
            parts: Parts {
                rest: Some(self.raw),
                sep: (!self.literal).then_some(self.delims.component),
            },
            delims: self.delims,
            literal: self.literal,
        }
    }

    /// Component `n` (1-based).
    pub fn component(&self, n: usize) -> Option<Component<'m>> {
        self.components().nth(n.checked_sub(1)?)
    }

    /// How many components the repetition has (at least 1).
    pub fn component_count(&self) -> usize {
        count_parts(self.raw, (!self.literal).then_some(self.delims.component))
    }
}

impl<'m> Component<'m> {
    /// The subcomponents of this component.
    pub fn subcomponents(&self) -> Subcomponents<'m> {
        Subcomponents {
            parts: Parts {
                rest: Some(self.raw),
                sep: (!self.literal).then_some(self.delims.subcomponent),
            },
            delims: self.delims,
            literal: self.literal,
        }
    }

    /// Subcomponent `n` (1-based).
    pub fn subcomponent(&self, n: usize) -> Option<Subcomponent<'m>> {
        self.subcomponents().nth(n.checked_sub(1)?)
    }

    /// How many subcomponents the component has (at least 1).
    pub fn subcomponent_count(&self) -> usize {
        count_parts(
            self.raw,
            (!self.literal).then_some(self.delims.subcomponent),
        )
    }
}
