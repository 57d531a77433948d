using System.Buffers;
using System.Text;

namespace Crm.Contacts.Features.Imports;

/// <summary>
/// A streaming RFC 4180 reader over UTF-8 bytes: one record at a time from a 64 KiB buffer, so a
/// 1 GB file never sits in memory. Quoted fields may hold delimiters, doubled quotes and line
/// breaks; LF and CRLF both end a record. Fields are exposed as byte spans (decoded only when a
/// caller asks for a string), and runs of ordinary bytes are copied with vectorised searches.
/// <see cref="Line"/> is the physical line a record starts on (1-based), as import errors report it.
/// </summary>
public sealed class CsvReader
{
    private const int MaxRecordBytes = 1 << 20;
    private static readonly SearchValues<byte> QuotedStops = SearchValues.Create("\"\n"u8);

    private readonly Stream _stream;
    private readonly byte _delimiter;
    private readonly SearchValues<byte> _unquotedStops;
    private readonly byte[] _buffer = new byte[1 << 16];
    private byte[] _record = new byte[1024];
    private int[] _starts = new int[32];
    private int[] _lengths = new int[32];
    private int _recordLength;
    private int _pos;
    private int _len;
    private bool _eof;
    private bool _started;
    private long _nextLine = 1;

    public CsvReader(Stream stream, byte delimiter = (byte)',')
    {
        _stream = stream;
        _delimiter = delimiter;
        _unquotedStops = SearchValues.Create([delimiter, (byte)'"', (byte)'\n', (byte)'\r']);
    }

    public int FieldCount { get; private set; }

    /// <summary>The line the current record started on.</summary>
    public long Line { get; private set; }

    /// <summary>Set when the current record is malformed (its fields are then incomplete).</summary>
    public string? Error { get; private set; }

    public ReadOnlySpan<byte> Span(int field) => _record.AsSpan(_starts[field], _lengths[field]);

    public string String(int field) => _lengths[field] == 0 ? "" : Encoding.UTF8.GetString(Span(field));

    public string[] ToStrings()
    {
        var fields = new string[FieldCount];
        for (var i = 0; i < fields.Length; i++) fields[i] = String(i);
        return fields;
    }

    public async ValueTask<bool> ReadAsync(CancellationToken ct)
    {
        FieldCount = 0;
        _recordLength = 0;
        Error = null;
        if (!_started)
        {
            _started = true;
            await FillAsync(ct);
            if (_buffer.AsSpan(_pos, _len - _pos).StartsWith("\uFEFF"u8)) _pos += 3; // UTF-8 byte order mark
        }
        if (_pos >= _len && !await FillAsync(ct)) return false;

        Line = _nextLine;
        var fieldStart = 0;
        var quoted = false;
        var inQuotes = false;
        var atFieldStart = true;
        while (true)
        {
            if (_pos >= _len && !await FillAsync(ct))
            {
                if (inQuotes) Error ??= "a quoted field is not closed before the end of the file";
                EndField(fieldStart, quoted);
                return true;
            }
            var span = _buffer.AsSpan(_pos, _len - _pos);
            if (inQuotes)
            {
                var q = span.IndexOfAny(QuotedStops);
                if (q < 0)
                {
                    Append(span);
                    _pos = _len;
                    continue;
                }
                Append(span[..q]);
                _pos += q + 1;
                if (span[q] == (byte)'\n')
                {
                    _nextLine++;
                    Append("\n"u8);
                    continue;
                }
                // A quote: doubled means a literal quote, otherwise the quoted part ends.
                if (_pos >= _len) await FillAsync(ct);
                if (_pos < _len && _buffer[_pos] == (byte)'"')
                {
                    Append("\""u8);
                    _pos++;
                }
                else
                {
                    inQuotes = false;
                }
                continue;
            }
            if (atFieldStart && span[0] == (byte)'"')
            {
                quoted = inQuotes = true;
                atFieldStart = false;
                _pos++;
                continue;
            }
            atFieldStart = false;
            var i = span.IndexOfAny(_unquotedStops);
            if (i < 0)
            {
                Append(span);
                _pos = _len;
                continue;
            }
            Append(span[..i]);
            _pos += i + 1;
            var b = span[i];
            if (b == _delimiter)
            {
                EndField(fieldStart, quoted);
                fieldStart = _recordLength;
                quoted = false;
                atFieldStart = true;
            }
            else if (b == (byte)'\n')
            {
                _nextLine++;
                EndField(fieldStart, quoted);
                return true;
            }
            else if (b == (byte)'\r')
            {
                if (_pos >= _len) await FillAsync(ct);
                if (_pos >= _len || _buffer[_pos] != (byte)'\n') Append("\r"u8);
            }
            else
            {
                Append("\""u8); // a quote inside an unquoted field is data
            }
        }
    }

    private void Append(ReadOnlySpan<byte> bytes)
    {
        if (_recordLength + bytes.Length > _record.Length)
        {
            if (_recordLength + bytes.Length > MaxRecordBytes)
            {
                Error ??= $"the record is longer than {MaxRecordBytes} bytes";
                return;
            }
            Array.Resize(ref _record, Math.Max(_record.Length * 2, _recordLength + bytes.Length));
        }
        bytes.CopyTo(_record.AsSpan(_recordLength));
        _recordLength += bytes.Length;
    }

    private void EndField(int start, bool quoted)
    {
        var length = _recordLength - start;
        if (!quoted)
        {
            // Unquoted fields lose the spaces spreadsheets pad with; quoted ones are kept as written.
            while (length > 0 && _record[start] == (byte)' ') { start++; length--; }
            while (length > 0 && _record[start + length - 1] == (byte)' ') length--;
        }
        if (FieldCount == _starts.Length)
        {
            Array.Resize(ref _starts, _starts.Length * 2);
            Array.Resize(ref _lengths, _lengths.Length * 2);
        }
        _starts[FieldCount] = start;
        _lengths[FieldCount] = length;
        FieldCount++;
    }

    private async ValueTask<bool> FillAsync(CancellationToken ct)
    {
        if (_pos < _len) return true;
        if (_eof) return false;
        _pos = 0;
        _len = await _stream.ReadAsync(_buffer, ct);
        if (_len == 0) _eof = true;
        return _len > 0;
    }
}
