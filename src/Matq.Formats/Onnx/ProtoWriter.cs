// Contract: a minimal protocol-buffers wire encoder (proto2/proto3 binary format): varints, 32-bit fixed floats and
// length-delimited fields (bytes, strings, nested messages, packed repeated scalars). Field keys are (number << 3) | wire
// type with wire types 0 = varint, 2 = length-delimited, 5 = fixed32. Negative int64 are 10-byte two's-complement varints.
// Messages are built bottom-up: a nested message is encoded to bytes first, then written as one length-delimited field.
using System.Buffers.Binary;
using System.Text;

namespace Matq.Formats.Onnx;

public sealed class ProtoWriter
{
    private const int Varint = 0, LengthDelimited = 2, Fixed32 = 5;
    private readonly MemoryStream _buffer = new();

    public long Length => _buffer.Length;

    public byte[] ToArray() => _buffer.ToArray();

    /// <summary>int64/int32/enum/bool as a varint field; zero is written too (ONNX readers accept explicit defaults).</summary>
    public ProtoWriter Int(int field, long value)
    {
        Key(field, Varint);
        WriteVarint(unchecked((ulong)value));
        return this;
    }

    public ProtoWriter Float(int field, float value)
    {
        Key(field, Fixed32);
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteSingleLittleEndian(b, value);
        _buffer.Write(b);
        return this;
    }

    public ProtoWriter String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public ProtoWriter Bytes(int field, ReadOnlySpan<byte> value)
    {
        Key(field, LengthDelimited);
        WriteVarint((ulong)value.Length);
        _buffer.Write(value);
        return this;
    }

    public ProtoWriter Message(int field, ProtoWriter message)
    {
        ArgumentNullException.ThrowIfNull(message);
        Key(field, LengthDelimited);
        WriteVarint((ulong)message._buffer.Length);
        message._buffer.Position = 0;
        message._buffer.CopyTo(_buffer);
        return this;
    }

    /// <summary>Repeated int64 in packed encoding (one length-delimited field of varints).</summary>
    public ProtoWriter PackedInts(int field, IEnumerable<long> values)
    {
        var inner = new ProtoWriter();
        foreach (var v in values) inner.WriteVarint(unchecked((ulong)v));
        return Message(field, inner);
    }

    /// <summary>Repeated float in packed encoding (little-endian fixed32 values).</summary>
    public ProtoWriter PackedFloats(int field, IReadOnlyList<float> values)
    {
        Key(field, LengthDelimited);
        WriteVarint((ulong)values.Count * 4);
        Span<byte> b = stackalloc byte[4];
        foreach (var v in values)
        {
            BinaryPrimitives.WriteSingleLittleEndian(b, v);
            _buffer.Write(b);
        }
        return this;
    }

    private void Key(int field, int wireType)
    {
        if (field < 1 || field > (1 << 29) - 1) throw new ArgumentOutOfRangeException(nameof(field), field, "protobuf field numbers are 1..2^29-1");
        WriteVarint(((ulong)field << 3) | (uint)wireType);
    }

    private void WriteVarint(ulong v)
    {
        while (v >= 0x80)
        {
            _buffer.WriteByte((byte)(v | 0x80));
            v >>= 7;
        }
        _buffer.WriteByte((byte)v);
    }
}
