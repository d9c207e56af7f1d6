//! What native pieces ([`super::ir::Native`]) share: the counted loop every hand-scheduled
//! kernel in Cranelift IR is built from, and the listing of x86 machine code pieces.
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value};
use cranelift_frontend::FunctionBuilder;

/// `for i in 0..n` in Cranelift IR: `body` is emitted once, with the counter `i` (a value of
/// type `ptr`), in the loop's block; the builder continues after the loop. Nothing is emitted
/// when `n ≤ 0` (the loop tests its counter at the end, so it must not be entered then).
pub fn counted_loop(
    fb: &mut FunctionBuilder,
    ptr: Type,
    n: i64,
    body: impl FnOnce(&mut FunctionBuilder, Value),
) {
    if n <= 0 {
        return;
    }
    let var = fb.declare_var(ptr);
    let zero = fb.ins().iconst(ptr, 0);
    fb.def_var(var, zero);
    let (head, exit) = (fb.create_block(), fb.create_block());
    fb.ins().jump(head, &[]);
    fb.switch_to_block(head);
    let i = fb.use_var(var);
    body(fb, i);
    let next = fb.ins().iadd_imm_s(i, 1);
    fb.def_var(var, next);
    let more = fb.ins().icmp_imm_s(IntCC::UnsignedLessThan, next, n);
    fb.ins().brif(more, head, &[], exit, &[]);
    fb.switch_to_block(exit);
}

/// The disassembly of x86-64 machine code, one instruction a line: offset and GNU-assembler
/// syntax (as Cranelift's listing), for [`super::ir::MachineCode::listing`].
pub fn x86_listing(bytes: &[u8]) -> String {
    use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter};
    let mut decoder = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
    let mut formatter = GasFormatter::new();
    let mut out = String::new();
    let mut text = String::new();
    for ins in &mut decoder {
        text.clear();
        formatter.format(&ins, &mut text);
        out.push_str(&format!("  {:04x}  {text}\n", ins.ip()));
    }
    out
}
