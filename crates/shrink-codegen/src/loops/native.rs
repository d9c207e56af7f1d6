//! Control flow for native pieces ([`super::ir::Native`]) written straight in Cranelift IR: the
//! counted loop every hand-scheduled kernel is built from.
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value};
use cranelift_frontend::FunctionBuilder;

/// `for i in 0..n` (`n ≥ 1`) in Cranelift IR: `body` is emitted once, with the counter `i` (a
/// value of type `ptr`), in the loop's block; the builder continues after the loop.
pub fn counted_loop(
    fb: &mut FunctionBuilder,
    ptr: Type,
    n: i64,
    body: impl FnOnce(&mut FunctionBuilder, Value),
) {
    assert!(n >= 1, "a counted loop runs at least once");
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
