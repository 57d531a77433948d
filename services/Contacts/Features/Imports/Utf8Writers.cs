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

    public static void Number(IBufferWriter<byte> w, decimal value)
    {
        Span<byte> tmp = stackalloc byte[64];
        Utf8Formatter.TryFormat(value, tmp, out var n);
        w.Write(tmp[..n]);
    }

    private static byte Hex(int nibble) => (byte)(nibble < 10 ? '0' + nibble : 'a' + nibble - 10);
}
