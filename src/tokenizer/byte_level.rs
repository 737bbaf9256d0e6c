//! GPT-2's byte-to-character map: every byte gets a printable character, so byte strings can be
//! stored as text in vocab files. Printable Latin-1 bytes map to themselves; the other 68 bytes
//! (controls, space, ...) map in order to U+0100.. (so space 0x20 becomes 'Ġ' U+0120).

/// True for the bytes that are their own character.
const fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// byte -> character (as a code point).
const BYTE_TO_CHAR: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut shifted = 0u32;
    let mut b = 0usize;
    while b < 256 {
        if is_printable(b as u8) {
            table[b] = b as u32;
        } else {
            table[b] = 256 + shifted;
            shifted += 1;
        }
        b += 1;
    }
    table
};

/// Number of code points in the mapped range: 0..256 + 68 shifted ones.
const MAPPED_LIMIT: usize = 256 + 68;

/// character (as a code point below MAPPED_LIMIT) -> byte, or -1 when the character is unused.
const CHAR_TO_BYTE: [i16; MAPPED_LIMIT] = {
    let mut table = [-1i16; MAPPED_LIMIT];
    let mut b = 0usize;
    while b < 256 {
        table[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    table
};

/// The character that stands for byte `b`.
#[inline]
pub fn byte_to_char(b: u8) -> char {
    // All entries are below U+0144, valid scalar values.
    char::from_u32(BYTE_TO_CHAR[b as usize]).unwrap_or('\u{FFFD}')
}

/// The byte a mapped character stands for, if it is one.
#[inline]
pub fn char_to_byte(c: char) -> Option<u8> {
    let byte = *CHAR_TO_BYTE.get(c as usize)?;
    u8::try_from(byte).ok()
}

/// The byte-level form of `text`: one mapped character per UTF-8 byte.
pub fn to_byte_level(text: &str) -> String {
    text.bytes().map(byte_to_char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_map() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0xAD), 'Ń'); // soft hyphen is the last shifted byte below 0xFF
        assert_eq!(byte_to_char(0), 'Ā');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('日'), None);
        assert_eq!(to_byte_level("é "), "Ã©Ġ");
    }
}
