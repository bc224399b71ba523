import pytest

from sim.memory import Access, BusError, Memory


def test_little_endian_bytes_and_words():
    m = Memory()
    m.write(0x1003, 0xAABBCCDD, size=4)
    assert m.read_word(0x200) == 0xAABBCCDD << 24
    assert m.read(0x1004, 2) == 0xBBCC
    m.write(0x1007, 0x1122, size=2)          # crosses into the next word
    assert m.read_word(0x200) >> 56 == 0x22 and m.read_word(0x201) == 0x11


def test_transfer_honours_byte_enables_and_logs():
    m = Memory()
    m.write(0x40, 0x1111_2222_3333_4444)
    m.transfer(adr=8, write=True, sel=0x0F, data=0xFFFF_FFFF_AAAA_BBBB, lock=True)
    assert m.read(0x40) == 0x1111_2222_AAAA_BBBB
    assert m.transfer(adr=8, write=False) == 0x1111_2222_AAAA_BBBB
    assert m.log == [Access(True, 8, 0x0F, 0xAAAA_BBBB, True),
                     Access(False, 8, 0xFF, 0x1111_2222_AAAA_BBBB, False)]
    assert m.written_words() == {8}


def test_injected_errors_by_index_and_word():
    m = Memory(error_at={1}, error_words={0x99})
    m.transfer(adr=1, write=True, data=5)
    with pytest.raises(BusError):
        m.transfer(adr=2, write=True, data=6)
    with pytest.raises(BusError):
        m.transfer(adr=0x99, write=False)
    assert m.read_word(2) == 0 and m.log[1].error and m.log[2].error
    assert m.written_words() == {1}


def test_copy_is_independent():
    m = Memory()
    m.write(0, 1)
    c = m.copy()
    c.write(0, 2)
    assert m.read(0) == 1 and c.read(0) == 2


def test_value_must_fit():
    with pytest.raises(ValueError):
        Memory().write(0, 1 << 32, size=4)
