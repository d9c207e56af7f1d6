//! Typed access to a node's attributes: each getter checks the attribute's type and range and
//! names the attribute in its error. String dispatch on attribute names stops here.
use crate::proto::{AttributeProto, attribute_proto::AttributeType};
use shrink_ir::Tensor;

/// The attributes of one node.
pub struct Attrs<'a> {
    list: &'a [AttributeProto],
}

fn kind(a: &AttributeProto) -> AttributeType {
    // Files written by old exporters may leave `type` unset; infer it from the populated field.
    match AttributeType::try_from(a.r#type).unwrap_or(AttributeType::Undefined) {
        AttributeType::Undefined => {
            if !a.ints.is_empty() {
                AttributeType::Ints
            } else if !a.floats.is_empty() {
                AttributeType::Floats
            } else if a.t.is_some() {
                AttributeType::Tensor
            } else if !a.s.is_empty() {
                AttributeType::String
            } else if a.f != 0.0 {
                AttributeType::Float
            } else {
                AttributeType::Int
            }
        }
        k => k,
    }
}

impl<'a> Attrs<'a> {
    pub fn new(list: &'a [AttributeProto]) -> Attrs<'a> {
        Attrs { list }
    }

    pub fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.list.iter().find(|a| a.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'a str> {
        self.list.iter().map(|a| a.name.as_str())
    }

    fn typed(&self, name: &str, want: AttributeType) -> Result<Option<&'a AttributeProto>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if !a.ref_attr_name.is_empty() => Err(format!(
                "attribute '{name}' refers to a function attribute, which is only valid inside a function"
            )),
            Some(a) if kind(a) == want => Ok(Some(a)),
            Some(a) => Err(format!(
                "attribute '{name}' should be {:?}, found {:?}",
                want,
                kind(a)
            )),
        }
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        Ok(self
            .typed(name, AttributeType::Int)?
            .map_or(default, |a| a.i))
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, String> {
        Ok(self.typed(name, AttributeType::Int)?.map(|a| a.i))
    }

    /// An INT attribute that must be 0 or 1.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.int(name, default as i64)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("attribute '{name}' must be 0 or 1, found {v}")),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32, String> {
        Ok(self
            .typed(name, AttributeType::Float)?
            .map_or(default, |a| a.f))
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        Ok(self
            .typed(name, AttributeType::Ints)?
            .map(|a| a.ints.clone()))
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, String> {
        Ok(self
            .typed(name, AttributeType::Floats)?
            .map(|a| a.floats.clone()))
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, String> {
        match self.typed(name, AttributeType::String)? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.to_vec())
                .map(Some)
                .map_err(|_| format!("attribute '{name}' is not UTF-8")),
        }
    }

    /// A TENSOR attribute, decoded (inline data only).
    pub fn tensor(&self, name: &str, cap: usize) -> Result<Option<Tensor>, String> {
        match self.typed(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => {
                let t =
                    a.t.as_ref()
                        .ok_or_else(|| format!("attribute '{name}' has no tensor"))?;
                crate::tensor::tensor_from_proto(t, None, cap)
                    .map(Some)
                    .map_err(|e| format!("attribute '{name}': {e}"))
            }
        }
    }
}
