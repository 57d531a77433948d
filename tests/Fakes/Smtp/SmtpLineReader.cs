namespace Crm.Fakes.Smtp;

internal sealed class SmtpLineTooLongException() : IOException("SMTP line too long");

/// <summary>
/// Reads CRLF-terminated lines as raw bytes. Only CRLF ends a line (RFC 5321 §2.3.8): a bare LF stays
/// inside the line, so a client that sends bare LFs shows up in the recorded data instead of being
/// silently repaired. Bytes, not strings, because DATA may be 8-bit in any charset.
/// </summary>
internal sealed class SmtpLineReader(Stream stream)
{
    private byte[] _buffer = new byte[16 * 1024];
    private int _start;
    private int _end;

    /// <returns>The line without its CRLF, or null when the peer closed the connection.</returns>
    public async ValueTask<byte[]?> ReadLineAsync(int maxLength, CancellationToken cancellationToken)
    {
        var scanFrom = _start;
        while (true)
        {
            var found = _buffer.AsSpan(scanFrom, _end - scanFrom).IndexOf("\r\n"u8);
            if (found >= 0)
            {
                var lineEnd = scanFrom + found;
                var line = _buffer[_start..lineEnd];
                _start = lineEnd + 2;
                return line;
            }
            if (_end - _start > maxLength)
            {
                throw new SmtpLineTooLongException();
            }
            // The CR of a CRLF may be the last byte read so far: rescan from it.
            scanFrom = Math.Max(_start, _end - 1) - _start;
            MakeRoom();
            scanFrom += _start;
            var read = await stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                return null;
            }
            _end += read;
        }
    }

    // Moves the unread bytes to the front, and doubles the buffer if a long line still fills it.
    private void MakeRoom()
    {
        var pending = _end - _start;
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, pending);
            _start = 0;
            _end = pending;
        }
        if (_end == _buffer.Length)
        {
            Array.Resize(ref _buffer, _buffer.Length * 2);
        }
    }
}
