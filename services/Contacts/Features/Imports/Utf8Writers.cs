using System.Buffers;
using System.Buffers.Text;

namespace Crm.Contacts.Features.Imports;

/// <summary>
/// Writes JSON values straight from the UTF-8 bytes of a CSV field, so a million rows are not
/// decoded to strings and encoded back.
/// </summary>
internal static class Utf8Writers
{
    private static readonly SearchValues<byte> JsonSpecial = SearchValues.Create(
        [.. Enumerable.Range(0, 0x20).Select(b => (byte)b), (byte)'"', (byte)'\\']);

    /// <summary>A JSON string literal (RFC 8259 escaping).</summary>
    public static void JsonString(IBufferWriter<byte> w, ReadOnlySpan<byte> utf8)
    {
        w.Write("\""u8);
        while (!utf8.IsEmpty)
        {
            var i = utf8.IndexOfAny(JsonSpecial);
            if (i < 0)
            {
                w.Write(utf8);
                break;
            }
            w.Write(utf8[..i]);
            var b = utf8[i];
            w.Write(b switch
            {
                (byte)'"' => "\\\""u8,
                (byte)'\\' => "\\\\"u8,
                (byte)'\n' => "\\n"u8,
                (byte)'\r' => "\\r"u8,
                (byte)'\t' => "\\t"u8,
                _ => [(byte)'\\', (byte)'u', (byte)'0', (byte)'0', Hex(b >> 4), Hex(b & 0xF)],
            });
            utf8 = utf8[(i + 1)..];
        }
        w.Write("\""u8);
    }

    /// <summary>
    /// A number as the file wrote it when that text is already what <see cref="Number(IBufferWriter{byte}, decimal)"/>
    /// would write (plain digits, no sign but a minus, no leading zero, no exponent), else formatted.
    /// </summary>
    public static void Number(IBufferWriter<byte> w, decimal value, ReadOnlySpan<byte> asWritten)
    {
        if (IsPlainNumber(asWritten)) w.Write(asWritten);
        else Number(w, value);
    }

    private static bool IsPlainNumber(ReadOnlySpan<byte> s)
    {
        if (s.Length is 0 or > 20) return false;
        var i = s[0] == (byte)'-' ? 1 : 0;
        if (i == s.Length || !char.IsAsciiDigit((char)s[i])) return false;
        // "-0…" is left to the formatter (negative zero), as is every other leading zero but "0" and "0.x".
        if (s[i] == (byte)'0' && (i == 1 || (i + 1 < s.Length && s[i + 1] != (byte)'.'))) return false;
        while (i < s.Length && char.IsAsciiDigit((char)s[i])) i++;
        if (i == s.Length) return true;
        if (s[i] != (byte)'.' || ++i == s.Length) return false;
        while (i < s.Length && char.IsAsciiDigit((char)s[i])) i++;
        return i == s.Length;
    }

    public static void Number(IBufferWriter<byte> w, decimal value)
    {
        Span<byte> tmp = stackalloc byte[64];
        Utf8Formatter.TryFormat(value, tmp, out var n);
        w.Write(tmp[..n]);
    }

    private static byte Hex(int nibble) => (byte)(nibble < 10 ? '0' + nibble : 'a' + nibble - 10);
}
