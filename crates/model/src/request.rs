use bytes::Bytes;
use std::ops::Range;

/// One CGI-style parameter exactly as the front server sent it.
///
/// Names and values stay bytes: PEP 3333 wants them decoded as latin-1, and
/// that decision belongs to the core, not to the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: Bytes,
    pub value: Bytes,
}

impl Param {
    pub fn new(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Param {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The params whose names and values lie at `ranges` in `head`, as
    /// slices of it (no copy): what a decoder found, made into params.
    pub fn slices(
        head: &Bytes,
        ranges: impl IntoIterator<Item = (Range<usize>, Range<usize>)>,
    ) -> Vec<Param> {
        ranges
            .into_iter()
            .map(|(name, value)| Param::new(head.slice(name), head.slice(value)))
            .collect()
    }
}

/// A decoded request head: its parameters in arrival order and the length of
/// the body that follows it on the wire.
///
/// Repeated names are kept as sent (nginx 1.22 repeats headers); merging them
/// is the core's job, so that every protocol merges the same way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub params: Vec<Param>,
    /// Bytes of body that follow the head (CONTENT_LENGTH, 0 when absent).
    pub content_length: u64,
    /// Things the decoder tolerated but the operator should hear about
    /// (for example a missing `SCGI=1`). The server logs them.
    pub warnings: Vec<String>,
}

impl Request {
    /// The first value sent under `name`, if any.
    pub fn param(&self, name: &[u8]) -> Option<&Bytes> {
        self.params
            .iter()
            .find(|p| p.name.as_ref() == name)
            .map(|p| &p.value)
    }

    /// Every value sent under `name`, in arrival order.
    pub fn values<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.params
            .iter()
            .filter(move |p| p.name.as_ref() == name)
            .map(|p| &p.value)
    }
}
