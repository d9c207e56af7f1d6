//! Import errors: always one line naming the file and, where there is one, the node and op.
// Names and strings come from the file: a newline in one must not break the message over lines.
use shrink_ir::verify::escaped;
use std::fmt;

/// An import failure with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub file: String,
    /// `(node name, op_type)` of the offending node.
    pub node: Option<(String, String)>,
    pub msg: String,
}

impl ImportError {
    pub fn new(file: &str, msg: impl Into<String>) -> ImportError {
        ImportError {
            file: file.into(),
            node: None,
            msg: msg.into(),
        }
    }

    pub fn at_node(file: &str, name: &str, op: &str, msg: impl Into<String>) -> ImportError {
        ImportError {
            file: file.into(),
            node: Some((name.into(), op.into())),
            msg: msg.into(),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, msg) = (escaped(&self.file), escaped(&self.msg));
        match &self.node {
            Some((n, op)) => write!(
                f,
                "{file}: node '{}' (op {}): {msg}",
                escaped(n),
                escaped(op)
            ),
            None => write!(f, "{file}: {msg}"),
        }
    }
}

impl std::error::Error for ImportError {}
