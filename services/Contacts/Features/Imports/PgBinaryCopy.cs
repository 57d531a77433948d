using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;

namespace Crm.Contacts.Features.Imports;

/// <summary>
/// Rows in PostgreSQL's binary COPY format, written straight into a byte buffer and sent through
/// a raw COPY stream: the import's hot path pays no per-field driver overhead and no UTF-16
/// round trip for text that is already UTF-8.
/// </summary>
internal sealed class PgBinaryCopy
{
    private static readonly DateTime PostgresEpoch = new(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);
    private static readonly byte[] Signature = [(byte)'P', (byte)'G', (byte)'C', (byte)'O', (byte)'P', (byte)'Y', (byte)'\n', 0xFF, (byte)'\r', (byte)'\n', 0];
    private readonly ArrayBufferWriter<byte> _buffer;

    public PgBinaryCopy(int capacity)
    {
        _buffer = new ArrayBufferWriter<byte>(capacity);
        Reset();
    }

    /// <summary>Starts a new COPY stream in the same buffer (the previous one must have been sent).</summary>
    public void Reset()
    {
        _buffer.ResetWrittenCount();
        _buffer.Write(Signature);
        Int32(0); // flags
        Int32(0); // header extension length
    }

    public ReadOnlyMemory<byte> Finish()
    {
        Int16(-1);
        return _buffer.WrittenMemory;
    }

    public void StartRow(short fields) => Int16(fields);

    public void Null() => Int32(-1);

    public void Text(string value)
    {
        var length = System.Text.Encoding.UTF8.GetByteCount(value);
        Int32(length);
        System.Text.Encoding.UTF8.GetBytes(value, _buffer.GetSpan(length));
        _buffer.Advance(length);
    }

    /// <summary>A json value: its binary form is the UTF-8 text, assembled by the caller in parts.</summary>
    public void Json(int length, ReadOnlySpan<byte> first)
    {
        Int32(length);
        _buffer.Write(first);
    }

    public void Append(ReadOnlySpan<byte> bytes) => _buffer.Write(bytes);

    /// <summary>A text (or json) value already in UTF-8: its binary form is the bytes themselves.</summary>
    public void Utf8(ReadOnlySpan<byte> text) => Json(text.Length, text);

    public void Int4(int value)
    {
        Int32(4);
        Int32(value);
    }

    public void Uuid(Guid value)
    {
        Int32(16);
        value.TryWriteBytes(_buffer.GetSpan(16), bigEndian: true, out _);
        _buffer.Advance(16);
    }

    public void TimestampTz(DateTime utc)
    {
        Int32(8);
        BinaryPrimitives.WriteInt64BigEndian(_buffer.GetSpan(8), (utc - PostgresEpoch).Ticks / 10);
        _buffer.Advance(8);
    }

    /// <summary>numeric: base-10000 digits with a weight, a sign and the display scale.</summary>
    public void Numeric(decimal value)
    {
        Span<char> text = stackalloc char[40];
        Math.Abs(value).TryFormat(text, out var n, default, CultureInfo.InvariantCulture);
        var s = text[..n];
        var dot = s.IndexOf('.');
        var integer = dot < 0 ? s : s[..dot];
        var fraction = dot < 0 ? [] : s[(dot + 1)..];
        integer = integer.TrimStart('0');

        Span<short> digits = stackalloc short[16];
        var count = 0;
        var firstGroup = integer.Length % 4 == 0 ? 4 : integer.Length % 4;
        for (var i = 0; i < integer.Length; i += i == 0 ? firstGroup : 4)
            digits[count++] = short.Parse(integer.Slice(i, i == 0 ? firstGroup : 4), CultureInfo.InvariantCulture);
        var weight = (short)(count - 1);
        for (var i = 0; i < fraction.Length; i += 4)
        {
            var group = fraction.Slice(i, Math.Min(4, fraction.Length - i));
            var d = short.Parse(group, CultureInfo.InvariantCulture);
            for (var pad = group.Length; pad < 4; pad++) d *= 10;
            digits[count++] = d;
        }
        // Leading zero groups move the weight; trailing zero groups are implied by the scale.
        var start = 0;
        while (start < count && digits[start] == 0) { start++; weight--; }
        while (count > start && digits[count - 1] == 0) count--;
        if (start == count) weight = 0;

        var ndigits = count - start;
        Int32(8 + 2 * ndigits);
        Int16((short)ndigits);
        Int16(weight);
        Int16((short)(value < 0 && ndigits > 0 ? 0x4000 : 0));
        Int16((short)fraction.Length);
        for (var i = start; i < count; i++) Int16(digits[i]);
    }

    private void Int16(short value)
    {
        BinaryPrimitives.WriteInt16BigEndian(_buffer.GetSpan(2), value);
        _buffer.Advance(2);
    }

    private void Int32(int value)
    {
        BinaryPrimitives.WriteInt32BigEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
    }
}
