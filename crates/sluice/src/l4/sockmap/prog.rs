//! The sockmap verdict program as reviewed bytecode, and the minimal ELF object around it
//! that aya loads (a program section, a license, a legacy `maps` section and the map
//! relocations). No BPF compiler is needed to build sluice. Nothing here talks to the
//! kernel: `sockmap::Kernel` loads the object.

use object::write::{Object, Relocation, Symbol, SymbolSection};
use object::{
    elf, Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags,
    SymbolKind, SymbolScope,
};

/// Program name (the ELF symbol aya looks the program up by).
pub(super) const PROG: &str = "sluice_verdict";
/// SOCKHASH the verdict program is attached to: socket cookie -> socket.
pub(super) const SRC_MAP: &str = "SLUICE_SRC";
/// SOCKHASH the program redirects into (no program attached): socket cookie -> socket.
pub(super) const DST_MAP: &str = "SLUICE_DST";
/// HASH: socket cookie -> `[peer socket's cookie, bytes redirected from this socket]`.
pub(super) const PEER_MAP: &str = "SLUICE_PEER";
/// Sockets per SOCKHASH (two per forwarded connection).
pub(super) const MAX_SOCKETS: u32 = 131_072;

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_SOCKHASH: u32 = 18;
const BPF_F_NO_PREALLOC: u32 = 1;

// Helper numbers from include/uapi/linux/bpf.h.
const FN_MAP_LOOKUP_ELEM: i32 = 1;
const FN_GET_SOCKET_COOKIE: i32 = 46;
const FN_SK_REDIRECT_HASH: i32 = 72;
/// `SK_PASS`: the bytes stay on the socket they arrived on (sluice may read them).
const SK_PASS: i32 = 1;

/// One `struct bpf_insn`: opcode, dst and src registers, offset, immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }
    /// `dst = src` (64-bit).
    const fn mov_reg(dst: u8, src: u8) -> Insn {
        Insn::new(0xbf, dst, src, 0, 0)
    }
    /// `dst = imm` (64-bit).
    const fn mov_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(0xb7, dst, 0, 0, imm)
    }
    /// `dst += imm` (64-bit).
    const fn add_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(0x07, dst, 0, 0, imm)
    }
    /// `*(u64 *)(dst + off) = src`.
    const fn store_dw(dst: u8, off: i16, src: u8) -> Insn {
        Insn::new(0x7b, dst, src, off, 0)
    }
    /// First half of `dst = map` (`BPF_LD | BPF_IMM | BPF_DW`, `BPF_PSEUDO_MAP_FD`); the
    /// loader writes the map's descriptor into `imm` through the relocation.
    const fn ld_map(dst: u8) -> [Insn; 2] {
        [Insn::new(0x18, dst, 1, 0, 0), Insn::new(0, 0, 0, 0, 0)]
    }
    /// `dst = *(u32 *)(src + off)`.
    const fn load_w(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(0x61, dst, src, off, 0)
    }
    /// `lock *(u64 *)(dst + off) += src` (`BPF_STX | BPF_ATOMIC | BPF_DW`, `BPF_ADD`).
    const fn atomic_add_dw(dst: u8, off: i16, src: u8) -> Insn {
        Insn::new(0xdb, dst, src, off, 0)
    }
    /// `call helper`.
    const fn call(helper: i32) -> Insn {
        Insn::new(0x85, 0, 0, 0, helper)
    }
    /// `if dst == imm goto +off`.
    const fn jeq_imm(dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(0x15, dst, 0, off, imm)
    }
    const fn exit() -> Insn {
        Insn::new(0x95, 0, 0, 0, 0)
    }

    /// The 8 little-endian bytes the kernel reads.
    pub(super) fn to_bytes(self) -> [u8; 8] {
        let [o0, o1] = self.off.to_le_bytes();
        let [i0, i1, i2, i3] = self.imm.to_le_bytes();
        [
            self.code,
            (self.src << 4) | (self.dst & 0x0f),
            o0,
            o1,
            i0,
            i1,
            i2,
            i3,
        ]
    }
}

/// Instruction index of the `ld_map` of `PEER_MAP` (relocated by the loader).
const PEER_LD: usize = 3;
/// Instruction index of the `ld_map` of `DST_MAP`.
const DST_LD: usize = 13;

/// The stream verdict: look up the peer entry of the socket the bytes arrived on (by
/// socket cookie: `[peer cookie, bytes]`), add the bytes to its count and redirect them to
/// the peer's send side. No entry: `SK_PASS` (the bytes stay readable on this socket;
/// sluice links the entries before the sockets, see `conn`).
///
/// ```text
///  0  r6 = r1                       skb
///  1  call get_socket_cookie        r0 = this socket's cookie
///  2  *(u64 *)(r10 - 8) = r0
///  3  r1 = map SLUICE_PEER          (2 slots)
///  5  r2 = r10
///  6  r2 += -8
///  7  call map_lookup_elem          r0 = &[peer cookie, bytes] or NULL
///  8  if r0 == 0 goto 18
///  9  r7 = *(u32 *)(r6 + 0)         skb->len
/// 10  lock *(u64 *)(r0 + 8) += r7   count the bytes
/// 11  r3 = r0                       key: the peer's cookie
/// 12  r1 = r6
/// 13  r2 = map SLUICE_DST           (2 slots)
/// 15  r4 = 0                        flags 0: the peer's egress
/// 16  call sk_redirect_hash         SK_PASS with the redirect set, or SK_DROP
/// 17  exit
/// 18  r0 = SK_PASS
/// 19  exit
/// ```
pub(super) fn verdict() -> Vec<Insn> {
    let [peer0, peer1] = Insn::ld_map(1);
    let [dst0, dst1] = Insn::ld_map(2);
    vec![
        Insn::mov_reg(6, 1),
        Insn::call(FN_GET_SOCKET_COOKIE),
        Insn::store_dw(10, -8, 0),
        peer0,
        peer1,
        Insn::mov_reg(2, 10),
        Insn::add_imm(2, -8),
        Insn::call(FN_MAP_LOOKUP_ELEM),
        Insn::jeq_imm(0, 0, 9),
        Insn::load_w(7, 6, 0),
        Insn::atomic_add_dw(0, 8, 7),
        Insn::mov_reg(3, 0),
        Insn::mov_reg(1, 6),
        dst0,
        dst1,
        Insn::mov_imm(4, 0),
        Insn::call(FN_SK_REDIRECT_HASH),
        Insn::exit(),
        Insn::mov_imm(0, SK_PASS),
        Insn::exit(),
    ]
}

/// The legacy `struct bpf_map_def` (type, key size, value size, max entries, flags; the id
/// and pinning words are zero).
fn map_def(kind: u32, key: u32, value: u32, max: u32, flags: u32) -> [u8; 28] {
    let mut out = [0u8; 28];
    for (i, word) in [kind, key, value, max, flags].into_iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// The ELF object aya loads: section `sk_skb/stream_verdict` with `verdict()`, `license`,
/// and `maps` with the three map definitions, the two `ld_map`s relocated to their maps.
pub(super) fn object() -> Result<Vec<u8>, object::write::Error> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::Bpf, Endianness::Little);
    let code: Vec<u8> = verdict().into_iter().flat_map(Insn::to_bytes).collect();
    let text = obj.add_section(
        Vec::new(),
        b"sk_skb/stream_verdict".to_vec(),
        SectionKind::Text,
    );
    let text_off = obj.append_section_data(text, &code, 8);
    obj.add_symbol(Symbol {
        name: PROG.as_bytes().to_vec(),
        value: text_off,
        size: code.len() as u64,
        kind: SymbolKind::Text,
        scope: SymbolScope::Dynamic,
        weak: false,
        section: SymbolSection::Section(text),
        flags: SymbolFlags::None,
    });
    let license = obj.add_section(Vec::new(), b"license".to_vec(), SectionKind::Data);
    // The helpers used are not GPL-only, so sluice's own licence can be declared.
    obj.append_section_data(license, b"Apache-2.0\0", 1);
    let maps = obj.add_section(Vec::new(), b"maps".to_vec(), SectionKind::Data);
    let defs = [
        (
            SRC_MAP,
            map_def(BPF_MAP_TYPE_SOCKHASH, 8, 4, MAX_SOCKETS, 0),
        ),
        (
            DST_MAP,
            map_def(BPF_MAP_TYPE_SOCKHASH, 8, 4, MAX_SOCKETS, 0),
        ),
        (
            PEER_MAP,
            map_def(BPF_MAP_TYPE_HASH, 8, 16, MAX_SOCKETS, BPF_F_NO_PREALLOC),
        ),
    ];
    let mut syms = Vec::new();
    for (name, def) in defs {
        let at = obj.append_section_data(maps, &def, 4);
        syms.push(obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: at,
            size: def.len() as u64,
            kind: SymbolKind::Data,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(maps),
            flags: SymbolFlags::None,
        }));
    }
    for (insn, sym) in [(PEER_LD, syms[2]), (DST_LD, syms[1])] {
        obj.add_relocation(
            text,
            Relocation {
                offset: text_off + (insn * 8) as u64,
                symbol: sym,
                addend: 0,
                flags: RelocationFlags::Elf {
                    r_type: elf::R_BPF_64_64,
                },
            },
        )?;
    }
    obj.write()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instruction_encodes_to_its_bytes() {
        let cases: [(Insn, [u8; 8]); 10] = [
            (Insn::load_w(7, 6, 0), [0x61, 0x67, 0, 0, 0, 0, 0, 0]),
            (Insn::atomic_add_dw(0, 8, 7), [0xdb, 0x70, 8, 0, 0, 0, 0, 0]),
            (Insn::mov_reg(6, 1), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]),
            (Insn::call(46), [0x85, 0, 0, 0, 46, 0, 0, 0]),
            (
                Insn::store_dw(10, -8, 0),
                [0x7b, 0x0a, 0xf8, 0xff, 0, 0, 0, 0],
            ),
            (Insn::ld_map(1)[0], [0x18, 0x11, 0, 0, 0, 0, 0, 0]),
            (
                Insn::add_imm(2, -8),
                [0x07, 0x02, 0, 0, 0xf8, 0xff, 0xff, 0xff],
            ),
            (Insn::jeq_imm(0, 0, 9), [0x15, 0x00, 9, 0, 0, 0, 0, 0]),
            (Insn::mov_imm(0, 1), [0xb7, 0x00, 0, 0, 1, 0, 0, 0]),
            (Insn::exit(), [0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for (insn, bytes) in cases {
            assert_eq!(insn.to_bytes(), bytes, "{insn:?}");
        }
    }

    /// The whole program, byte for byte: a change to it must change this test too.
    #[test]
    fn the_verdict_program_is_these_bytes() {
        let code: Vec<u8> = verdict().into_iter().flat_map(Insn::to_bytes).collect();
        let want: [[u8; 8]; 20] = [
            [0xbf, 0x16, 0, 0, 0, 0, 0, 0],
            [0x85, 0, 0, 0, 46, 0, 0, 0],
            [0x7b, 0x0a, 0xf8, 0xff, 0, 0, 0, 0],
            [0x18, 0x11, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0xbf, 0xa2, 0, 0, 0, 0, 0, 0],
            [0x07, 0x02, 0, 0, 0xf8, 0xff, 0xff, 0xff],
            [0x85, 0, 0, 0, 1, 0, 0, 0],
            [0x15, 0x00, 9, 0, 0, 0, 0, 0],
            [0x61, 0x67, 0, 0, 0, 0, 0, 0],
            [0xdb, 0x70, 8, 0, 0, 0, 0, 0],
            [0xbf, 0x03, 0, 0, 0, 0, 0, 0],
            [0xbf, 0x61, 0, 0, 0, 0, 0, 0],
            [0x18, 0x12, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0xb7, 0x04, 0, 0, 0, 0, 0, 0],
            [0x85, 0, 0, 0, 72, 0, 0, 0],
            [0x95, 0, 0, 0, 0, 0, 0, 0],
            [0xb7, 0x00, 0, 0, 1, 0, 0, 0],
            [0x95, 0, 0, 0, 0, 0, 0, 0],
        ];
        assert_eq!(code, want.concat());
        assert_eq!(verdict()[PEER_LD], Insn::ld_map(1)[0]);
        assert_eq!(verdict()[DST_LD], Insn::ld_map(2)[0]);
        // The jump at 8 lands on `r0 = SK_PASS`.
        assert_eq!(verdict()[8 + 1 + 9], Insn::mov_imm(0, SK_PASS));
    }

    #[test]
    fn the_object_parses_with_the_program_maps_and_relocations() {
        use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
        let bytes = object().expect("object");
        let file = object::File::parse(&*bytes).expect("parse");
        let text = file
            .section_by_name("sk_skb/stream_verdict")
            .expect("program section");
        assert_eq!(text.size(), 20 * 8);
        assert_eq!(text.relocations().count(), 2);
        let names: Vec<String> = file
            .symbols()
            .filter_map(|s| s.name().ok().map(str::to_owned))
            .collect();
        for want in [PROG, SRC_MAP, DST_MAP, PEER_MAP] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        let license = file.section_by_name("license").expect("license");
        assert_eq!(license.data().expect("data"), b"Apache-2.0\0");
    }
}
