// The protobuf wire encoding against bytes worked out by hand from the protobuf encoding spec, the ONNX messages' field
// numbers, and MatMulNBits packing against hand-packed bytes (low bits first, ragged last block, one zero-point row per N).
using Matq.Formats.Onnx;

namespace Matq.Formats.Tests.Onnx;

public sealed class OnnxEncodingTests
{
    [Fact]
    public void Varints_fixed32_and_length_delimited_fields_match_the_wire_format()
    {
        // field 1 varint 150 → key 0x08, 0x96 0x01; field 2 fixed32 1.0f → key 0x15, 00 00 80 3F;
        // field 3 string "hi" → key 0x1A, len 2; field 20 varint 2 → key (20<<3) = 160 → 0xA0 0x01, 0x02
        var w = new ProtoWriter().Int(1, 150).Float(2, 1f).String(3, "hi").Int(20, 2);
        Assert.Equal(new byte[] { 0x08, 0x96, 0x01, 0x15, 0x00, 0x00, 0x80, 0x3F, 0x1A, 0x02, (byte)'h', (byte)'i', 0xA0, 0x01, 0x02 }, w.ToArray());
    }

    [Fact]
    public void Negative_int64_is_a_ten_byte_twos_complement_varint()
    {
        var w = new ProtoWriter().Int(3, -1);
        Assert.Equal(new byte[] { 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 }, w.ToArray());
    }

    [Fact]
    public void Packed_repeated_ints_and_nested_messages_are_length_prefixed()
    {
        var inner = new ProtoWriter().Int(1, 1);
        var w = new ProtoWriter().PackedInts(8, [3, 270]).Message(7, inner);
        // field 8 LEN (0x42), 3 bytes: 03, 8E 02; field 7 LEN (0x3A), 2 bytes: 08 01
        Assert.Equal(new byte[] { 0x42, 0x03, 0x03, 0x8E, 0x02, 0x3A, 0x02, 0x08, 0x01 }, w.ToArray());
    }

    [Fact]
    public void An_int_attribute_carries_name_value_and_type_int()
    {
        var node = new OnnxNode("Softmax", ["x"], ["y"], "n", [OnnxAttribute.Of("axis", -1L)]);
        var g = new OnnxGraph("g");
        g.Inputs.Add(new OnnxValueInfo("x", OnnxDataType.Float, ["b", 4L]));
        g.Nodes.Add(node);
        g.Outputs.Add(new OnnxValueInfo("y", OnnxDataType.Float, ["b", 4L]));
        var bytes = new OnnxModel(g).ToBytes();
        // AttributeProto: name "axis" (0A 04 ...), i = −1 (18 + 10 bytes), type INT (A0 01 02)
        byte[] attr = [0x0A, 0x04, (byte)'a', (byte)'x', (byte)'i', (byte)'s', 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0xA0, 0x01, 0x02];
        Assert.True(Contains(bytes, attr));
        // ModelProto starts with ir_version 8 (08 08) and producer_name "matq" (12 04 ...)
        Assert.Equal(new byte[] { 0x08, 0x08, 0x12, 0x04, (byte)'m', (byte)'a', (byte)'t', (byte)'q' }, bytes[..8]);
    }

    [Fact]
    public void Four_bit_codes_pack_low_nibble_first_and_a_ragged_block_is_zero_padded()
    {
        // N = 1, K = 20, block 16: block 0 = codes 0..15, block 1 = codes 16..19 then 12 zero codes
        var codes = Enumerable.Range(0, 20).Select(i => (byte)(i % 16)).ToArray();
        var w = MatMulNBitsLayout.Pack(codes, 1, 20, 4, 16, [0.5f, 2f], [3, 9]);
        Assert.Equal(new long[] { 1, 2, 8 }, w.BDims);
        Assert.Equal(new byte[] { 0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE, 0x10, 0x32, 0, 0, 0, 0, 0, 0 }, w.B);
        Assert.Equal(new byte[] { 0x93 }, w.ZeroPoints); // zp 3 low, 9 high
        var deq = MatMulNBitsLayout.Dequantize(w);
        Assert.Equal((0 - 3) * 0.5f, deq[0]);
        Assert.Equal((3 - 9) * 2f, deq[19]);
    }

    [Fact]
    public void Two_bit_zero_points_start_a_new_byte_for_every_row()
    {
        // N = 2, K = 48, block 16 → 3 blocks, ceil(3·2/8) = 1 zero-point byte per row
        var codes = new byte[2 * 48];
        var w = MatMulNBitsLayout.Pack(codes, 2, 48, 2, 16, Enumerable.Repeat(1f, 6).ToArray(), [1, 2, 3, 3, 0, 1]);
        Assert.Equal(new long[] { 2, 1 }, w.ZeroPointsDims);
        Assert.Equal(new byte[] { 0b_11_10_01, 0b_01_00_11 }, w.ZeroPoints);
        Assert.Equal(new long[] { 2, 3, 4 }, w.BDims);
    }

    [Fact]
    public void Unsupported_bits_blocks_and_codes_are_refused()
    {
        Assert.Contains("2, 4 or 8", Assert.Throws<MatqException>(() => MatMulNBitsLayout.Pack(new byte[16], 1, 16, 3, 16, [1f], [0])).Message);
        Assert.Contains("power of 2", Assert.Throws<MatqException>(() => MatMulNBitsLayout.Pack(new byte[48], 1, 48, 4, 48, [1f], [0])).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => MatMulNBitsLayout.Pack([4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1, 16, 2, 16, [1f], [0]));
    }

    private static bool Contains(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return true;
        return false;
    }
}
