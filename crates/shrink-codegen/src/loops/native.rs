//! What native pieces ([`super::ir::Native`]) share: the counted loop every hand-scheduled
//! kernel in Cranelift IR is built from, the int8 dot-product step of the integer kernels, and
//! the register names and listing of x86 machine code pieces.
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

/// `acc + Σ x·u` over the 16 byte lanes (x signed, u unsigned), four lanes into each i32 lane.
/// With VNNI the tree is exactly the one Cranelift's x64 backend lowers to one `vpdpbusd`
/// (signed operand first, accumulator second); elsewhere the last pairwise add is a plain add,
/// which keeps the total and is cheaper without VNNI.
pub fn dot_accumulate(
    fb: &mut FunctionBuilder,
    x: Value,
    u: Value,
    acc: Value,
    vnni: bool,
) -> Value {
    let half = |fb: &mut FunctionBuilder, high: bool| {
        let (xs, us) = if high {
            (fb.ins().swiden_high(x), fb.ins().uwiden_high(u))
        } else {
            (fb.ins().swiden_low(x), fb.ins().uwiden_low(u))
        };
        let m = fb.ins().imul(xs, us);
        let lo = fb.ins().swiden_low(m);
        let hi = fb.ins().swiden_high(m);
        fb.ins().iadd_pairwise(lo, hi)
    };
    let lo = half(fb, false);
    let hi = half(fb, true);
    let both = if vnni {
        fb.ins().iadd_pairwise(lo, hi)
    } else {
        fb.ins().iadd(lo, hi)
    };
    fb.ins().iadd(both, acc)
}

/// Vector register `i` of the x86 machine code pieces (any integer index type).
pub fn zmm(i: impl TryInto<u32>) -> iced_x86::code_asm::AsmRegisterZmm {
    let i = i.try_into().ok().expect("register index");
    iced_x86::code_asm::registers::zmm::get_zmm(iced_x86::Register::ZMM0 + i).expect("zmm register")
}

/// See [`zmm`].
pub fn ymm(i: impl TryInto<u32>) -> iced_x86::code_asm::AsmRegisterYmm {
    let i = i.try_into().ok().expect("register index");
    iced_x86::code_asm::registers::ymm::get_ymm(iced_x86::Register::YMM0 + i).expect("ymm register")
}

/// See [`zmm`].
pub fn xmm(i: impl TryInto<u32>) -> iced_x86::code_asm::AsmRegisterXmm {
    let i = i.try_into().ok().expect("register index");
    iced_x86::code_asm::registers::xmm::get_xmm(iced_x86::Register::XMM0 + i).expect("xmm register")
}
